//! A FAT filesystem over a byte region of a device or file, filled with the seed files.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::fatdir::DosTime;
use super::fatlayout::{Geometry, Image, FATS};
use super::{ConfigdriveError, MIN_SIZE};

/// Formats FAT over `[offset, offset + size)` of `target`, writes `tree`, fsyncs; returns the FAT type.
pub(super) fn write(
    target: &Path,
    offset: u64,
    size: u64,
    label: &str,
    volume_id: u32,
    tree: &[(String, Vec<u8>)],
) -> Result<String, ConfigdriveError> {
    if size < MIN_SIZE {
        return Err(ConfigdriveError::TooSmall {
            target: target.to_path_buf(),
            size,
        });
    }
    let io_err = |action: &str| io_error(target, action);
    let (file, sector_size) = open_target(target, offset, size)?;

    let geometry =
        Geometry::choose(size, sector_size).ok_or_else(|| ConfigdriveError::TooLarge {
            target: target.to_path_buf(),
            size,
        })?;
    let mut region = Region {
        file: &file,
        start: offset,
        len: size,
        pos: 0,
    };
    zero(region).map_err(io_err("zeroing the configdrive region"))?;
    let mut label_bytes = [b' '; 11];
    label_bytes[..label.len()].copy_from_slice(label.as_bytes());
    let image = Image::lay_out(&geometry, &label_bytes, tree, now()).map_err(|reason| {
        ConfigdriveError::Layout {
            target: target.to_path_buf(),
            size,
            reason,
        }
    })?;
    let write_at = |region: &mut Region<'_>, at: u64, bytes: &[u8], what: &str| {
        region.pos = at;
        region
            .write_all(bytes)
            .map_err(io_err(&format!("writing {what}")))
    };
    write_at(
        &mut region,
        0,
        &geometry.boot_sector(&label_bytes, volume_id),
        "the FAT boot sector",
    )?;
    for copy in 0..FATS {
        let at = geometry.fat_start() + u64::from(copy) * geometry.fat_bytes();
        write_at(&mut region, at, &image.fat, "the file allocation table")?;
    }
    write_at(
        &mut region,
        geometry.root_start(),
        &image.root,
        "the root directory",
    )?;
    for (cluster, bytes) in &image.dirs {
        write_at(
            &mut region,
            geometry.cluster_start(*cluster),
            bytes,
            "a directory",
        )?;
    }
    for (index, cluster) in &image.files {
        let (path, content) = &tree[*index];
        region.pos = geometry.cluster_start(*cluster);
        region
            .write_all(content)
            .map_err(|source| ConfigdriveError::WriteFile {
                file: path.clone(),
                target: target.to_path_buf(),
                size,
                source,
            })?;
    }
    file.sync_all()
        .map_err(io_err("flushing the configdrive to disk (fsync)"))?;
    Ok(geometry.fat_type.name().to_string())
}

/// Maps an I/O error while doing `action` on `target`.
fn io_error(target: &Path, action: &str) -> impl FnOnce(io::Error) -> ConfigdriveError {
    let target = target.to_path_buf();
    let action = action.to_string();
    move |source| ConfigdriveError::Io {
        action,
        target,
        source,
    }
}

/// Opens `target` for the region `[offset, offset + size)`: a block device must hold it
/// (its logical sector size is used), a file is extended to hold it (512-byte sectors).
fn open_target(target: &Path, offset: u64, size: u64) -> Result<(File, u16), ConfigdriveError> {
    let io_err = |action: &str| io_error(target, action);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(target)
        .map_err(|source| ConfigdriveError::Open {
            target: target.to_path_buf(),
            source,
        })?;
    let meta = file.metadata().map_err(io_err("reading metadata"))?;
    let end = offset.saturating_add(size);
    if !meta.file_type().is_block_device() {
        if meta.len() < end {
            file.set_len(end)
                .map_err(io_err("extending the file to hold the configdrive"))?;
        }
        return Ok((file, 512));
    }
    let len = (&file)
        .seek(SeekFrom::End(0))
        .map_err(io_err("reading the device size"))?;
    if end > len {
        return Err(ConfigdriveError::OutOfBounds {
            target: target.to_path_buf(),
            offset,
            size,
            len,
        });
    }
    let sector = logical_sector_size(&file)
        .map_err(io_err("reading the logical sector size (BLKSSZGET)"))?;
    Ok((file, sector))
}

fn now() -> DosTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DosTime::from_unix(secs)
}

/// Writes zeros over the whole region, 1 MiB at a time.
fn zero(mut region: Region<'_>) -> io::Result<()> {
    let chunk = vec![0u8; 1 << 20];
    while region.pos < region.len {
        let n = usize::try_from(region.len - region.pos)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        region.write_all(&chunk[..n])?;
    }
    Ok(())
}

/// The logical sector size of a block device: FAT's sector must not be smaller,
/// or Linux refuses to mount it on 4Kn disks.
fn logical_sector_size(file: &File) -> io::Result<u16> {
    let size = crate::blockdev::logical_sector(file).map_err(io::Error::other)?;
    u16::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two() && *s >= 512)
        .ok_or_else(|| io::Error::other(format!("unexpected logical sector size {size}")))
}

/// A window `[start, start + len)` of a file, seen as a stream starting at 0.
/// Reads and writes never leave the window, so bytes around it stay untouched.
#[derive(Clone, Copy)]
struct Region<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Region<'_> {
    fn room(&self, want: usize) -> usize {
        usize::try_from(self.len.saturating_sub(self.pos))
            .unwrap_or(usize::MAX)
            .min(want)
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the configdrive region",
            ));
        }
        let done = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += done as u64;
        Ok(done)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the region start")
        })?;
        Ok(self.pos)
    }
}
