//! A TCP relay in front of a real server that closes one connection after it has
//! passed a given number of response bytes: a registry that stops mid-blob, for the
//! resume to be seen against the real registry behind it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running relay, stopped on drop.
pub struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

impl Relay {
    /// Relays 127.0.0.1:<free port> to 127.0.0.1:`upstream`; the first connection
    /// whose responses pass `cut_after` bytes is closed there (only one).
    pub fn start(upstream: u16, cut_after: u64) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(AtomicU64::new(0));
        let (stopped, cut) = (stop.clone(), cuts.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let cut = cut.clone();
                std::thread::spawn(move || pipe(client, server, cut_after, cut));
            }
        });
        Relay { port, stop, cuts }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections it cut (0 or 1).
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Requests flow as they come; responses until the cut, if this connection makes it.
fn pipe(client: TcpStream, server: TcpStream, cut_after: u64, cuts: Arc<AtomicU64>) {
    let (mut c_read, mut s_write) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut passed = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = n as u64;
        let cut_here = passed + n > cut_after
            && cuts
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        if cut_here {
            let _ = c_write.write_all(&buf[..(cut_after - passed) as usize]);
            break;
        }
        if c_write.write_all(&buf[..n as usize]).is_err() {
            break;
        }
        passed += n;
    }
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = s_read.shutdown(Shutdown::Both);
}
