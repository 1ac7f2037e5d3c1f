"""The dataplane as values: map layouts (the Python side of bytecode/blixt.h),
the mark layout, the desired model and the planner. No I/O here; blixt.node
applies plans to the kernel."""
