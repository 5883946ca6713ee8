//! TPM 2.0 wire format: big-endian integers and size-prefixed TPM2B buffers, a command
//! builder that fills in the size, and a response reader that never reads past the end.

/// TPM_ST_NO_SESSIONS.
pub const ST_NO_SESSIONS: u16 = 0x8001;
/// TPM_ST_SESSIONS.
pub const ST_SESSIONS: u16 = 0x8002;
/// TPM_RS_PW: the password session (empty password).
pub const RS_PW: u32 = 0x4000_0009;

/// A command being marshalled.
pub struct Command {
    buf: Vec<u8>,
}

impl Command {
    /// Starts a command: tag, size (patched in [`Command::finish`]), command code.
    pub fn new(tag: u16, cc: u32) -> Command {
        // Room for any command we send, so no reallocation leaves a copy of sealed data.
        let mut c = Command {
            buf: Vec::with_capacity(1024),
        };
        c.u16(tag).u32(0).u32(cc);
        c
    }
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends a big-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// Appends raw bytes (an already marshalled structure).
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    /// Appends a TPM2B: u16 size then the bytes.
    pub fn tpm2b(&mut self, b: &[u8]) -> &mut Self {
        self.u16(b.len() as u16).raw(b)
    }
    /// Appends an authorization area with one session that carries no nonce and no HMAC
    /// (the password session, or a policy session whose object has an empty authValue).
    pub fn auth_session(&mut self, handle: u32) -> &mut Self {
        // sessionHandle(4) nonce(2) attributes(1) hmac(2)
        self.u32(9).u32(handle).u16(0).u8(0).u16(0)
    }
    /// The finished command bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[2..6].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// Marshals a structure into bytes with a closure (for TPM2B contents).
pub fn build(f: impl FnOnce(&mut Command)) -> Vec<u8> {
    let mut c = Command { buf: Vec::new() };
    f(&mut c);
    c.buf
}

/// A response truncated or malformed at `at`.
#[derive(Debug, thiserror::Error)]
#[error("TPM response too short or malformed at byte {at}")]
pub struct Short {
    pub at: usize,
}

/// Reads a response front to back.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or(Short { at: self.pos })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// A byte.
    pub fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.bytes(1)?[0])
    }
    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Short> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, Short> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A TPM2B's contents.
    pub fn tpm2b(&mut self) -> Result<&'a [u8], Short> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    /// The parameter area of a response to a command with sessions: a u32
    /// parameterSize, then that many bytes (the authorization area follows).
    pub fn parameters(&mut self) -> Result<Reader<'a>, Short> {
        let n = self.u32()? as usize;
        Ok(Reader::new(self.bytes(n)?))
    }
    /// A TPM2B including its size prefix (how clevis stores jwk_pub / jwk_priv).
    pub fn tpm2b_with_size(&mut self) -> Result<&'a [u8], Short> {
        let start = self.pos;
        self.tpm2b()?;
        Ok(&self.data[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_size_is_patched_and_reader_is_bounded() {
        let mut c = Command::new(ST_NO_SESSIONS, 0x17B);
        c.u16(8);
        let bytes = c.finish();
        assert_eq!(bytes, [0x80, 0x01, 0, 0, 0, 12, 0, 0, 1, 0x7B, 0, 8]);
        let mut r = Reader::new(&[0, 3, 1, 2]);
        assert!(
            r.tpm2b().is_err(),
            "a TPM2B claiming more bytes than present is an error"
        );
        let mut r = Reader::new(&[0, 2, 1, 2, 9]);
        assert_eq!(r.tpm2b_with_size().unwrap(), &[0, 2, 1, 2]);
        assert_eq!(r.u8().unwrap(), 9);
    }
}
