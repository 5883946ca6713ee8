//! Block I/O through one door: ioctls, O_DIRECT alignment, telling the kernel
//! about partitions, and waiting for device nodes.
