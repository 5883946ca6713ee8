//! Page-aligned buffers and the fixed pools they circulate in, so the pipeline's
//! memory is bounded by construction and `O_DIRECT` can write them as they are.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// Alignment of every buffer: enough for `O_DIRECT` on 512- and 4096-byte sectors.
pub(crate) const ALIGN: usize = 4096;

/// A zero-initialised, page-aligned byte buffer with a fill length.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation (like Vec<u8>); no shared aliasing.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `cap` zeroed bytes (`cap` > 0), aligned to [`ALIGN`].
    pub(crate) fn new(cap: usize) -> AlignedBuf {
        let layout = Self::layout(cap);
        // SAFETY: the layout has a non-zero size (asserted in `layout`).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, cap, len: 0 }
    }

    fn layout(cap: usize) -> Layout {
        assert!(cap > 0, "empty aligned buffer");
        Layout::from_size_align(cap, ALIGN).expect("buffer layout")
    }

    /// Capacity in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    /// Bytes filled.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Sets the fill length (at most the capacity).
    pub(crate) fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "fill length beyond capacity");
        self.len = len;
    }

    /// The whole allocation, for filling.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for cap bytes, initialised (zeroed at allocation), uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    /// The filled part.
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid and initialised for cap >= len bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

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
                AlignedBuf::new(self.size)
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
        let a = pool.get(&cancel).unwrap();
        assert_eq!(a.spare_ptr() as usize % ALIGN, 0);
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

    impl AlignedBuf {
        fn spare_ptr(&self) -> *const u8 {
            self.ptr.as_ptr()
        }
    }
}
