//! Page-aligned buffers and the fixed pools they circulate in, so the pipeline's
//! memory is bounded by construction and `O_DIRECT` can write them as they are.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// Alignment of every buffer: enough for `O_DIRECT` on 512- and 4096-byte sectors.
pub(crate) const ALIGN: usize = crate::blockdev::DIRECT_ALIGN;

pub(crate) use crate::blockdev::AlignedBuf;

/// A buffer on loan from a [`Pool`]; returns home when dropped.
pub(crate) struct Pooled {
    buf: Option<AlignedBuf>,
    home: Sender<AlignedBuf>,
}

impl Deref for Pooled {
    type Target = AlignedBuf;
    fn deref(&self) -> &AlignedBuf {
        self.buf.as_ref().expect("pooled buffer present until drop")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut AlignedBuf {
        self.buf.as_mut().expect("pooled buffer present until drop")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(mut b) = self.buf.take() {
            b.set_len(0);
            // If the pool is gone the buffer is simply freed.
            let _ = self.home.send(b);
        }
    }
}

/// At most `count` buffers of `size` bytes; `get` waits for one to come back.
pub(crate) struct Pool {
    size: usize,
    count: usize,
    allocated: usize,
    tx: Sender<AlignedBuf>,
    rx: Receiver<AlignedBuf>,
}

impl Pool {
    /// A pool that will allocate at most `count` buffers of `size` bytes, lazily.
    pub(crate) fn new(size: usize, count: usize) -> Pool {
        let (tx, rx) = channel();
        Pool {
            size,
            count,
            allocated: 0,
            tx,
            rx,
        }
    }

    /// How many buffers were ever allocated (never more than `count`).
    pub(crate) fn allocated(&self) -> usize {
        self.allocated
    }

    /// A free buffer, or `None` once `cancel` is set while waiting.
    pub(crate) fn get(&mut self, cancel: &AtomicBool) -> Option<Pooled> {
        let buf = match self.rx.try_recv() {
            Ok(b) => b,
            Err(_) if self.allocated < self.count => {
                self.allocated += 1;
                AlignedBuf::with_capacity(self.size)
            }
            Err(_) => loop {
                if cancel.load(Ordering::Relaxed) {
                    return None;
                }
                match self.rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(b) => break b,
                    Err(RecvTimeoutError::Timeout) => continue,
                    // Unreachable while we hold `tx`, but never spin on it.
                    Err(RecvTimeoutError::Disconnected) => return None,
                }
            },
        };
        Some(Pooled {
            buf: Some(buf),
            home: self.tx.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_recycled() {
        let cancel = AtomicBool::new(false);
        let mut pool = Pool::new(1 << 20, 2);
        let mut a = pool.get(&cancel).unwrap();
        assert_eq!(a.spare().as_ptr() as usize % ALIGN, 0);
        let b = pool.get(&cancel).unwrap();
        drop(a);
        let c = pool.get(&cancel).unwrap();
        assert_eq!(
            pool.allocated(),
            2,
            "a returned buffer is reused, not a third allocated"
        );
        drop((b, c));
    }

    #[test]
    fn exhausted_pool_waits_until_cancelled() {
        let cancel = AtomicBool::new(true);
        let mut pool = Pool::new(4096, 1);
        let _held = pool.get(&cancel).unwrap();
        assert!(pool.get(&cancel).is_none());
    }
}
