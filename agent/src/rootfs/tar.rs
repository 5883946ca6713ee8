//! A streaming tar reader: ustar, GNU (long names, old sparse) and PAX (long names,
//! numeric ids, times, `SCHILY.xattr.*`, `SCHILY.acl.*`, GNU sparse 0.0/0.1/1.0).
//! It only parses; `write` decides what lands on disk.

use std::io::{self, Read};

const BLOCK: u64 = 512;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// One archive member, headers resolved.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Path bytes as archived (e.g. `./usr/bin/ls`).
    pub path: Vec<u8>,
    pub kind: Option<Kind>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, u32),
    /// Link target (hard links: an archive path; symlinks: the literal target).
    pub link: Vec<u8>,
    pub dev_major: u64,
    pub dev_minor: u64,
    /// `SCHILY.xattr.<name>` records: name, raw value.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `SCHILY.acl.access` / `.default` in text form.
    pub acl_access: Option<String>,
    pub acl_default: Option<String>,
    /// For sparse files: the data chunks (offset, length) and the real size.
    pub sparse: Option<(Vec<(u64, u64)>, u64)>,
    /// Bytes of data that follow the header in the archive.
    pub size: u64,
}

/// Streams entries out of `R`; the current entry's data is read through `Read`.
pub struct Archive<R: Read> {
    r: R,
    remaining: u64,
    pad: u64,
    /// Total bytes consumed from `r`.
    pub position: u64,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// An octal or base-256 numeric field.
pub fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(*b as u64))
                .ok_or_else(|| bad("numeric field overflows"))?;
        }
        return Ok(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .filter(|b| *b != b' ')
        .collect();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(
        std::str::from_utf8(&s).map_err(|_| bad("numeric field is not text"))?,
        8,
    )
    .map_err(|_| bad(format!("bad octal field {:?}", String::from_utf8_lossy(&s))))
}

fn cstr(field: &[u8]) -> Vec<u8> {
    field.iter().copied().take_while(|b| *b != 0).collect()
}

fn parse_decimal_time(v: &[u8]) -> (i64, u32) {
    let s = String::from_utf8_lossy(v);
    let (sec, frac) = s.split_once('.').unwrap_or((&s, ""));
    // Up to nine leading digits of the fraction (counted in chars: it may hold anything).
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    let nanos = format!("{digits:0<9}").parse().unwrap_or(0);
    (sec.trim().parse().unwrap_or(0), nanos)
}

/// Parses PAX records `"<len> <key>=<value>\n"`; values are raw bytes.
pub fn pax_records(data: &[u8]) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("PAX record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad PAX record length"))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(bad("PAX record length out of range"));
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("PAX record without '='"))?;
        out.push((
            String::from_utf8_lossy(&rec[..eq]).into_owned(),
            rec[eq + 1..].to_vec(),
        ));
        rest = &rest[len..];
    }
    Ok(out)
}

impl<R: Read> Archive<R> {
    /// A reader over a tar stream.
    pub fn new(r: R) -> Self {
        Archive {
            r,
            remaining: 0,
            pad: 0,
            position: 0,
        }
    }

    /// The underlying reader (to drain it after the end-of-archive marker).
    pub fn into_inner(self) -> R {
        self.r
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.r.read_exact(&mut buf[..k])?;
            self.position += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    fn block(&mut self) -> io::Result<Option<[u8; 512]>> {
        let mut b = [0u8; 512];
        let mut got = 0;
        while got < 512 {
            let n = self.r.read(&mut b[got..])?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(bad("archive ends inside a header"))
                };
            }
            got += n;
        }
        self.position += 512;
        Ok(Some(b))
    }

    fn read_all(&mut self, size: u64) -> io::Result<Vec<u8>> {
        if size > 64 << 20 {
            return Err(bad("extended header larger than 64 MiB"));
        }
        let mut v = vec![0u8; size as usize];
        self.r.read_exact(&mut v)?;
        self.position += size;
        self.skip((BLOCK - size % BLOCK) % BLOCK)?;
        Ok(v)
    }

    /// The next entry, or `None` at the end-of-archive marker (or a clean EOF).
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let (rem, pad) = (self.remaining, self.pad);
        self.remaining = 0;
        self.pad = 0;
        // A size near 2^64 (base-256 or PAX) cannot be in the stream: it ends first.
        self.skip(rem.saturating_add(pad))?;
        let mut e = Entry::default();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            let Some(h) = self.block()? else {
                return Ok(None);
            };
            if h.iter().all(|b| *b == 0) {
                return Ok(None);
            }
            let stored = number(&h[148..156])?;
            let sum: u64 = h
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if (148..156).contains(&i) {
                        b' ' as u64
                    } else {
                        *b as u64
                    }
                })
                .sum();
            if stored != sum {
                return Err(bad(format!(
                    "header checksum mismatch at byte {}: not a tar archive, or corrupt",
                    self.position - 512
                )));
            }
            let size = number(&h[124..136])?;
            let flag = h[156];
            match flag {
                b'x' => {
                    pax.extend(pax_records(&self.read_all(size)?)?);
                    continue;
                }
                b'g' => {
                    self.read_all(size)?;
                    continue;
                }
                b'L' => {
                    long_name = Some(cstr(&self.read_all(size)?));
                    continue;
                }
                b'K' => {
                    long_link = Some(cstr(&self.read_all(size)?));
                    continue;
                }
                _ => {}
            }
            let gnu = &h[257..265] == b"ustar  \0";
            let mut path = cstr(&h[0..100]);
            if !gnu && &h[257..262] == b"ustar" {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    path = [prefix, b"/".to_vec(), path].concat();
                }
            }
            e.path = long_name.take().unwrap_or(path);
            e.link = long_link.take().unwrap_or_else(|| cstr(&h[157..257]));
            e.mode = (number(&h[100..108])? & 0o7777) as u32;
            e.uid = number(&h[108..116])?;
            e.gid = number(&h[116..124])?;
            e.mtime = (number(&h[136..148])? as i64, 0);
            e.dev_major = number(&h[329..337])?;
            e.dev_minor = number(&h[337..345])?;
            e.size = size;
            e.kind = Some(match flag {
                b'0' | 0 | b'7' | b'S' => Kind::File,
                b'1' => Kind::HardLink,
                b'2' => Kind::Symlink,
                b'3' => Kind::Char,
                b'4' => Kind::Block,
                b'5' => Kind::Dir,
                b'6' => Kind::Fifo,
                other => {
                    return Err(bad(format!(
                        "unsupported tar entry type {:?} for {}",
                        other as char,
                        String::from_utf8_lossy(&e.path)
                    )))
                }
            });
            if flag == b'S' {
                e.sparse = Some(self.old_gnu_sparse(&h)?);
            }
            break;
        }
        let map_in_data = self.apply_pax(&mut e, pax)?;
        self.remaining = e.size;
        self.pad = (BLOCK - e.size % BLOCK) % BLOCK;
        if map_in_data {
            // PAX sparse 1.0 keeps its map at the start of the data.
            let map = self.sparse_map_1_0()?;
            if let Some((m, _)) = &mut e.sparse {
                *m = map;
            }
        }
        Ok(Some(e))
    }

    fn old_gnu_sparse(&mut self, h: &[u8; 512]) -> io::Result<(Vec<(u64, u64)>, u64)> {
        let mut map = Vec::new();
        let push = |map: &mut Vec<(u64, u64)>, b: &[u8]| -> io::Result<()> {
            let (o, n) = (number(&b[0..12])?, number(&b[12..24])?);
            if o != 0 || n != 0 {
                map.push((o, n));
            }
            Ok(())
        };
        for i in 0..4 {
            push(&mut map, &h[386 + i * 24..410 + i * 24])?;
        }
        let real = number(&h[483..495])?;
        let mut more = h[482] != 0;
        while more {
            let b = self
                .block()?
                .ok_or_else(|| bad("archive ends inside a sparse map"))?;
            for i in 0..21 {
                push(&mut map, &b[i * 24..(i + 1) * 24])?;
            }
            more = b[504] != 0;
        }
        Ok((map, real))
    }

    /// The 1.0 map: decimal lines (count, then offset/length pairs), padded to a block.
    /// Parsed as it is read, one block at a time; at most 16 MiB of map.
    fn sparse_map_1_0(&mut self) -> io::Result<Vec<(u64, u64)>> {
        let mut line: Vec<u8> = Vec::new();
        let mut count: Option<u64> = None;
        let mut nums: Vec<u64> = Vec::new();
        let mut read = 0u64;
        loop {
            let mut b = [0u8; 512];
            self.r.read_exact(&mut b)?;
            self.position += 512;
            self.remaining = self.remaining.saturating_sub(512);
            read += 512;
            for c in b {
                if c != b'\n' {
                    if line.len() >= 20 {
                        return Err(bad("sparse map line longer than a 64-bit number"));
                    }
                    line.push(c);
                    continue;
                }
                let n: u64 = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "bad number {:?} in a sparse map",
                            String::from_utf8_lossy(&line)
                        ))
                    })?;
                line.clear();
                match count {
                    None => count = Some(n),
                    Some(_) => nums.push(n),
                }
                if count.is_some_and(|c| nums.len() as u64 == c.saturating_mul(2)) {
                    // The rest of this block is padding.
                    return Ok(nums.chunks(2).map(|c| (c[0], c[1])).collect());
                }
            }
            if read >= 16 << 20 {
                return Err(bad("sparse map larger than 16 MiB"));
            }
        }
    }

    /// Applies the PAX records; true when a sparse 1.0 map precedes the data.
    fn apply_pax(&mut self, e: &mut Entry, pax: Vec<(String, Vec<u8>)>) -> io::Result<bool> {
        let num = |v: &[u8]| {
            String::from_utf8_lossy(v)
                .trim()
                .parse::<u64>()
                .map_err(|_| bad("bad PAX number"))
        };
        let (mut major, mut sparse_name, mut real, mut map, mut pending_off) =
            (None, None, None, Vec::new(), None);
        for (k, v) in pax {
            match k.as_str() {
                "path" => e.path = v,
                "linkpath" => e.link = v,
                "size" => e.size = num(&v)?,
                "uid" => e.uid = num(&v)?,
                "gid" => e.gid = num(&v)?,
                "mtime" => e.mtime = parse_decimal_time(&v),
                "SCHILY.acl.access" => {
                    e.acl_access = Some(String::from_utf8_lossy(&v).into_owned())
                }
                "SCHILY.acl.default" => {
                    e.acl_default = Some(String::from_utf8_lossy(&v).into_owned())
                }
                "GNU.sparse.major" => major = Some(num(&v)?),
                "GNU.sparse.name" => sparse_name = Some(v),
                "GNU.sparse.realsize" | "GNU.sparse.size" => real = Some(num(&v)?),
                "GNU.sparse.offset" => pending_off = Some(num(&v)?),
                "GNU.sparse.numbytes" => map.push((pending_off.take().unwrap_or(0), num(&v)?)),
                "GNU.sparse.map" => {
                    let n: Vec<u64> = String::from_utf8_lossy(&v)
                        .split(',')
                        .filter_map(|s| s.trim().parse().ok())
                        .collect();
                    map.extend(n.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0], c[1])));
                }
                _ => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        e.xattrs.push((name.as_bytes().to_vec(), v));
                    }
                }
            }
        }
        if let Some(n) = sparse_name {
            e.path = n;
        }
        if major == Some(1) {
            e.sparse = Some((Vec::new(), real.unwrap_or(0)));
            return Ok(true);
        }
        if !map.is_empty() || real.is_some() {
            let end = map.last().map_or(0, |(o, n)| o.saturating_add(*n));
            e.sparse = Some((map, real.unwrap_or(end)));
        }
        Ok(false)
    }
}

impl<R: Read> Read for Archive<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let k = (buf.len() as u64).min(self.remaining) as usize;
        let n = self.r.read(&mut buf[..k])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside a file's data",
            ));
        }
        self.remaining -= n as u64;
        self.position += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base256() {
        assert_eq!(number(b"0000644\0").unwrap(), 0o644);
        assert_eq!(
            number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap(),
            1 << 32
        );
        assert_eq!(number(b"        ").unwrap(), 0);
    }

    /// A ustar header: `name`, type `flag`, octal `size`, checksum filled in.
    fn header(name: &str, flag: u8, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    /// An archive: a PAX header holding `records`, then a file `f` with `data`.
    fn with_pax(records: &[&[u8]], data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for r in records {
            // "<len> <record>\n", the length counting itself.
            let mut len = r.len() + 2;
            len += format!("{len}").len();
            if format!("{len}").len() + r.len() + 2 != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len} ").as_bytes());
            body.extend_from_slice(r);
            body.push(b'\n');
        }
        let pad = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(512) * 512, 0);
        let mut out = header("pax", b'x', body.len() as u64).to_vec();
        out.extend_from_slice(&body);
        pad(&mut out);
        out.extend_from_slice(&header("f", b'0', data.len() as u64));
        out.extend_from_slice(data);
        pad(&mut out);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn pax_mtime_with_a_multibyte_fraction_is_read_not_a_panic() {
        // Found by fuzzing: the fraction was cut at byte 9, inside a character.
        assert_eq!(parse_decimal_time(b"1.22913178\xff"), (1, 229_131_780));
        assert_eq!(
            parse_decimal_time("5.1234567890é".as_bytes()),
            (5, 123_456_789)
        );
        let ar = with_pax(&[b"mtime=1700000000.22913178\xff"], b"x");
        let e = Archive::new(&ar[..]).next_entry().unwrap().unwrap();
        assert_eq!(e.mtime, (1_700_000_000, 229_131_780));
    }

    #[test]
    fn a_size_near_two_to_the_64_is_an_error_not_an_overflow() {
        // Base-256 size 2^64 - 1: the padding after it does not fit in a u64.
        let mut h = header("big", b'0', 0);
        h[124..136].copy_from_slice(&[
            0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ]);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let ar = [&h[..], &[0u8; 1024]].concat();
        let mut a = Archive::new(&ar[..]);
        assert_eq!(a.next_entry().unwrap().unwrap().size, u64::MAX);
        assert!(a.next_entry().is_err(), "the archive ends inside the data");
        // The same size from a PAX record.
        let ar = with_pax(&[b"size=18446744073709551615"], b"");
        let mut a = Archive::new(&ar[..]);
        assert_eq!(a.next_entry().unwrap().unwrap().size, u64::MAX);
        assert!(a.next_entry().is_err());
    }

    #[test]
    fn sparse_maps_with_extreme_numbers_are_errors_or_values_never_overflows() {
        // PAX 0.0 map whose last chunk ends past 2^64.
        let ar = with_pax(
            &[
                b"GNU.sparse.offset=18446744073709551615",
                b"GNU.sparse.numbytes=10",
            ],
            b"",
        );
        let e = Archive::new(&ar[..]).next_entry().unwrap().unwrap();
        assert_eq!(e.sparse, Some((vec![(u64::MAX, 10)], u64::MAX)));
        // 1.0 map announcing 2^64 - 1 chunks: read until the archive ends, then an error.
        let data = [&b"18446744073709551615\n1\n2\n"[..], &[0u8; 509]].concat();
        let ar = with_pax(
            &[
                b"GNU.sparse.major=1",
                b"GNU.sparse.minor=0",
                b"GNU.sparse.realsize=3",
            ],
            &data,
        );
        assert!(Archive::new(&ar[..]).next_entry().is_err());
        // A number that is not one.
        let data = [&b"1\n1x\n2\n"[..], &[0u8; 506]].concat();
        let ar = with_pax(&[b"GNU.sparse.major=1", b"GNU.sparse.minor=0"], &data);
        let err = Archive::new(&ar[..]).next_entry().unwrap_err();
        assert!(
            err.to_string()
                .contains("bad number \"1x\" in a sparse map"),
            "{err}"
        );
    }

    #[test]
    fn a_sparse_1_0_map_split_across_blocks_is_read_whole() {
        // 100 chunks: the map's text spans several blocks, one number across a boundary.
        let mut map = String::from("100\n");
        for i in 0..100u64 {
            map.push_str(&format!("{}\n1\n", i * 1_000_000));
        }
        let mut data = map.into_bytes();
        data.resize(data.len().div_ceil(512) * 512, 0);
        let map_len = data.len() as u64;
        data.extend_from_slice(&[b'x'; 100]);
        let ar = with_pax(
            &[
                b"GNU.sparse.major=1",
                b"GNU.sparse.minor=0",
                b"GNU.sparse.realsize=99000001",
            ],
            &data,
        );
        let mut a = Archive::new(&ar[..]);
        let e = a.next_entry().unwrap().unwrap();
        let (chunks, real) = e.sparse.clone().unwrap();
        assert_eq!(real, 99_000_001);
        assert_eq!(chunks.len(), 100);
        assert_eq!(chunks[57], (57_000_000, 1));
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len() as u64, e.size - map_len);
        assert!(a.next_entry().unwrap().is_none());
    }

    #[test]
    fn pax_records_keep_binary_values() {
        let body = [&b" SCHILY.xattr.user.x="[..], b"\x02\x00=\n"].concat();
        let rec = [format!("{}", body.len() + 2).as_bytes(), &body].concat();
        let r = pax_records(&rec).unwrap();
        assert_eq!(
            r,
            vec![("SCHILY.xattr.user.x".to_string(), b"\x02\x00=".to_vec())]
        );
        assert!(pax_records(b"99 path=x\n").is_err());
    }
}
