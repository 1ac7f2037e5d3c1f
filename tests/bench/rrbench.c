/* Request/response and bulk load for the dataplane benchmark, in the spirit
 * of netperf's TCP_RR, TCP_CRR, UDP_RR and TCP_STREAM (netperf is not in
 * Debian main).
 *
 *   rrbench serve PORT                 TCP and UDP on PORT: echo 1-byte requests
 *                                      (a thread per TCP connection, one for UDP);
 *                                      a TCP connection whose first byte is 'S'
 *                                      is a stream sink instead: read until EOF
 *   rrbench rr  ADDR PORT SECONDS      one connection, back-to-back 1-byte transactions
 *   rrbench crr ADDR PORT SECONDS      a new connection per transaction
 *   rrbench urr ADDR PORT SECONDS      one connected UDP socket, back-to-back 1-byte
 *                                      transactions, resent after 1 s without answer
 *   rrbench stream ADDR PORT SECONDS   send 'S', then 64 KiB writes for SECONDS
 *
 * rr and crr print "transactions=N seconds=S rate=R" (R per second); urr adds
 * " lost=L", the requests that went unanswered for 1 s and were resent (not
 * counted as transactions). stream prints "bytes=B seconds=S rate=R", B the
 * payload sent and R in bytes per second; S runs until the server has closed,
 * so bytes still queued at the deadline are timed too. In crr the client
 * closes first, as in netperf: TIME_WAIT stays with the client, which should
 * run with net.ipv4.tcp_tw_reuse=1 to reuse its ports at any rate. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* First byte of a stream connection; rr and crr must never open with it. */
#define STREAM_HELLO 'S'
#define STREAM_BUF (64 * 1024)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void *handle(void *arg)
{
	int fd = (int)(long)arg;
	char c;

	if (read(fd, &c, 1) != 1) {
		/* Closed before a request: nothing to do. */
	} else if (c == STREAM_HELLO) {
		char buf[STREAM_BUF];

		/* Discard until EOF; closing then tells the client all arrived. */
		while (read(fd, buf, sizeof(buf)) > 0)
			;
	} else {
		/* Answer every byte until the client closes; the first one too. */
		do {
			if (write(fd, &c, 1) != 1)
				break;
		} while (read(fd, &c, 1) == 1);
	}
	close(fd);
	return NULL;
}

static void *udp_echo(void *arg)
{
	int fd = (int)(long)arg;
	char buf[65536];

	/* One thread is enough: each datagram is answered before the next. */
	for (;;) {
		struct sockaddr_storage from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);

		if (n >= 0)
			sendto(fd, buf, n, 0, (struct sockaddr *)&from, len);
	}
	return NULL;
}

static __attribute__((noreturn)) void serve(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);
	int ufd = socket(AF_INET, SOCK_DGRAM, 0);
	pthread_t ut;

	if (lfd < 0 || ufd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1024))
		die("bind/listen");
	if (bind(ufd, (struct sockaddr *)&sa, sizeof(sa)))
		die("bind udp");
	if (pthread_create(&ut, NULL, udp_echo, (void *)(long)ufd))
		die("pthread_create");
	pthread_detach(ut);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		pthread_t t;
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			die("accept");
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, handle, (void *)(long)fd))
			die("pthread_create");
		pthread_detach(t);
	}
}

static int dial(const struct sockaddr_in *sa)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		die("connect");
	return fd;
}

static void transact(int fd, char c)
{
	if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
		die("transaction");
}

static long udp_rr(const struct sockaddr_in *sa, double end, long *lost)
{
	struct timeval tv = { .tv_sec = 1 };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	unsigned char seq = 0;
	long n = 0;

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)))
		die("connect");
	while (now() < end) {
		unsigned char c = ++seq;

		if (send(fd, &c, 1, 0) != 1)
			die("send");
		/* A late answer to a resent request would otherwise be taken
		 * for the answer to the next one; the sequence byte skips it. */
		for (;;) {
			ssize_t r = recv(fd, &c, 1, 0);

			if (r == 1 && c == seq) {
				n++;
				break;
			}
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				(*lost)++;
				break;
			}
			if (r < 0 && errno != EINTR)
				die("recv");
		}
	}
	close(fd);
	return n;
}

static long long stream(const struct sockaddr_in *sa, double end)
{
	static char buf[STREAM_BUF];
	int fd = dial(sa);
	char c = STREAM_HELLO;
	long long bytes = 0;

	if (write(fd, &c, 1) != 1)
		die("write");
	while (now() < end) {
		ssize_t w = write(fd, buf, sizeof(buf));

		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		bytes += w;
	}
	/* The server closes only after reading everything up to our FIN. */
	if (shutdown(fd, SHUT_WR))
		die("shutdown");
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	return bytes;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	double seconds, start, end;
	long n = 0, lost = 0;
	long long bytes = 0;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "serve"))
		serve(atoi(argv[2]));
	if (argc != 5 || (strcmp(argv[1], "rr") && strcmp(argv[1], "crr") &&
			  strcmp(argv[1], "urr") && strcmp(argv[1], "stream"))) {
		fprintf(stderr, "usage: rrbench serve PORT | rrbench rr|crr|urr|stream ADDR PORT SECONDS\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
		die("address");
	sa.sin_port = htons(atoi(argv[3]));
	seconds = atof(argv[4]);
	start = now();
	end = start + seconds;
	/* 'r' and 'c' open rr and crr connections: never STREAM_HELLO. */
	if (!strcmp(argv[1], "rr")) {
		int fd = dial(&sa);

		while (now() < end) {
			transact(fd, 'r');
			n++;
		}
		close(fd);
	} else if (!strcmp(argv[1], "urr")) {
		n = udp_rr(&sa, end, &lost);
	} else if (!strcmp(argv[1], "stream")) {
		bytes = stream(&sa, end);
	} else {
		while (now() < end) {
			int fd = dial(&sa);

			transact(fd, 'c');
			close(fd);
			n++;
		}
	}
	seconds = now() - start;
	if (!strcmp(argv[1], "stream"))
		printf("bytes=%lld seconds=%.3f rate=%.1f\n", bytes, seconds, bytes / seconds);
	else if (!strcmp(argv[1], "urr"))
		printf("transactions=%ld seconds=%.3f rate=%.1f lost=%ld\n", n, seconds, n / seconds, lost);
	else
		printf("transactions=%ld seconds=%.3f rate=%.1f\n", n, seconds, n / seconds);
	return 0;
}
