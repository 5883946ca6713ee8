//! The finish action after the final report: reboot, poweroff, kexec, none.
