//! The served bytes checked against a detached signature as they arrive: a thread of
//! its own reads them (copied from the download's buffers in 1 MiB pieces, so the
//! fetch thread only copies) and hashes them for the signature; the verdict comes at the
//! end of the stream, before the writer may commit the head of the disk, like the
//! digest's.

use crate::trust::detached::Checker;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bytes gathered before they go to the checking thread.
const PIECE: usize = 1 << 20;
/// Pieces in flight: the download waits for the check beyond this (memory stays bounded).
const DEPTH: usize = 8;

/// A running signature check over the served bytes.
pub(crate) struct SignatureStream {
    tx: Option<SyncSender<Vec<u8>>>,
    pending: Vec<u8>,
    check: Option<JoinHandle<Result<String, String>>>,
}

impl SignatureStream {
    /// Starts checking `checker`'s signature over the bytes [`update`](Self::update) is fed.
    pub(crate) fn start(checker: Arc<Checker>) -> SignatureStream {
        let (tx, rx) = sync_channel(DEPTH);
        let now = crate::timestamp::now().clamp(0, i64::from(u32::MAX)) as u32;
        let check = std::thread::Builder::new()
            .name("signature".into())
            .spawn(move || {
                checker
                    .verify(Pieces::new(rx), now)
                    .map_err(|e| e.to_string())
            })
            .ok();
        SignatureStream {
            tx: Some(tx),
            pending: Vec::with_capacity(PIECE),
            check,
        }
    }

    /// Feeds the next served bytes.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = (PIECE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == PIECE {
                self.send();
            }
        }
    }

    fn send(&mut self) {
        let piece = std::mem::replace(&mut self.pending, Vec::with_capacity(PIECE));
        if let Some(tx) = &self.tx {
            // A checking thread that stopped early says why at `finish`.
            let _ = tx.send(piece);
        }
    }

    /// Ends the stream and waits for the verdict: who signed, or why it does not verify.
    pub(crate) fn finish(mut self) -> Result<String, String> {
        if !self.pending.is_empty() {
            self.send();
        }
        self.tx = None;
        match self.check.take().map(JoinHandle::join) {
            Some(Ok(verdict)) => verdict,
            Some(Err(_)) => Err("the signature check stopped unexpectedly".into()),
            None => Err("the signature check could not be started".into()),
        }
    }
}

/// The pieces sent by [`SignatureStream`], read in order; the end of the stream is the
/// sender going away.
struct Pieces {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Pieces {
    fn new(rx: Receiver<Vec<u8>>) -> Pieces {
        Pieces {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Pieces {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(piece) => {
                    self.cur = piece;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
