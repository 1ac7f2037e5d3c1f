/* Request/response load for the dataplane benchmark, in the spirit of
 * netperf's TCP_RR and TCP_CRR (netperf is not in Debian main).
 *
 *   rrbench serve PORT                 echo 1-byte requests, a thread per connection
 *   rrbench rr  ADDR PORT SECONDS      one connection, back-to-back 1-byte transactions
 *   rrbench crr ADDR PORT SECONDS      a new connection per transaction
 *
 * Clients print "transactions=N seconds=S rate=R" (R per second). In crr the
 * client closes first, as in netperf: TIME_WAIT stays with the client, which
 * should run with net.ipv4.tcp_tw_reuse=1 to reuse its ports at any rate. */
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
#include <time.h>
#include <unistd.h>

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

	/* Answer every byte until the client closes. */
	while (read(fd, &c, 1) == 1) {
		if (write(fd, &c, 1) != 1)
			break;
	}
	close(fd);
	return NULL;
}

static __attribute__((noreturn)) void serve(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0);

	if (lfd < 0)
		die("socket");
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1024))
		die("bind/listen");
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

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	double seconds, start, end;
	long n = 0;

	signal(SIGPIPE, SIG_IGN);
	if (argc == 3 && !strcmp(argv[1], "serve"))
		serve(atoi(argv[2]));
	if (argc != 5 || (strcmp(argv[1], "rr") && strcmp(argv[1], "crr"))) {
		fprintf(stderr, "usage: rrbench serve PORT | rrbench rr|crr ADDR PORT SECONDS\n");
		return 2;
	}
	if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1)
		die("address");
	sa.sin_port = htons(atoi(argv[3]));
	seconds = atof(argv[4]);
	start = now();
	end = start + seconds;
	if (!strcmp(argv[1], "rr")) {
		int fd = dial(&sa);

		while (now() < end) {
			transact(fd, 'r');
			n++;
		}
		close(fd);
	} else {
		while (now() < end) {
			int fd = dial(&sa);

			transact(fd, 'c');
			close(fd);
			n++;
		}
	}
	seconds = now() - start;
	printf("transactions=%ld seconds=%.3f rate=%.1f\n", n, seconds, n / seconds);
	return 0;
}
