//! Wiping a disk: every signature libblkid finds on it and its partitions,
//! the MBR and both GPT headers.
