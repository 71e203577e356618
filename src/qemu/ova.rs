//! The OVA: a POSIX ustar archive holding the OVF descriptor first, the manifest next,
//! then the disk, which is the order OVF requires and importers that stream the file
//! depend on. The manifest lists every other file's SHA256 as `SHA256(name)= hex`.
//!
//! Writes only the archive it is given (the build writes it under a `.partial` name and
//! renames it once complete).

use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

const BLOCK: usize = 512;
/// ustar's octal size field holds up to 8 GiB - 1; larger files use GNU's base-256 form.
const MAX_OCTAL_SIZE: u64 = 0o77777777777;

/// One line per file, in order.
pub fn manifest(entries: &[(&str, String)]) -> String {
    entries
        .iter()
        .map(|(name, digest)| format!("SHA256({name})= {digest}\n"))
        .collect()
}

/// Reads a manifest back: (file name, hex digest) per line.
pub fn parse_manifest(text: &str) -> Option<Vec<(String, String)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let rest = l.strip_prefix("SHA256(")?;
            let (name, digest) = rest.split_once(")= ")?;
            Some((name.to_string(), digest.trim().to_string()))
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The SHA256 of a file, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A ustar header for a regular file (mode 0644, owner 0, mtime fixed by the caller so
/// two builds of the same bytes give the same archive).
pub fn header(name: &str, size: u64, mtime: u64) -> io::Result<[u8; BLOCK]> {
    if name.is_empty() || name.len() > 100 || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("OVA member name {name:?} must be 1 to 100 bytes without '/'"),
        ));
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[100..108], 0o644);
    put_octal(&mut h[108..116], 0);
    put_octal(&mut h[116..124], 0);
    if size <= MAX_OCTAL_SIZE {
        put_octal(&mut h[124..136], size);
    } else {
        // GNU base-256: the high bit of the first byte set, the size big-endian.
        let field = &mut h[124..136];
        field.fill(0);
        field[0] = 0x80;
        field[4..12].copy_from_slice(&size.to_be_bytes());
    }
    put_octal(&mut h[136..148], mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    // The checksum is computed with its own field as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

fn put_octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(s.as_bytes());
    field[width] = 0;
}

/// What goes into the archive after the descriptor and the manifest.
pub struct Member<'a> {
    pub name: &'a str,
    pub path: &'a Path,
}

/// Writes the OVA: descriptor, manifest (covering the descriptor and every member), then
/// each member. Returns the manifest written.
pub fn write_ova(
    out: &mut impl Write,
    descriptor_name: &str,
    descriptor: &str,
    members: &[Member<'_>],
    mtime: u64,
) -> io::Result<String> {
    let manifest_name = match descriptor_name.strip_suffix(".ovf") {
        Some(stem) => format!("{stem}.mf"),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the descriptor's name must end in .ovf",
            ))
        }
    };
    let mut digests = vec![(descriptor_name, sha256_hex(descriptor.as_bytes()))];
    for m in members {
        digests.push((m.name, sha256_file(m.path)?));
    }
    let mf = manifest(&digests);
    write_bytes(out, descriptor_name, descriptor.as_bytes(), mtime)?;
    write_bytes(out, &manifest_name, mf.as_bytes(), mtime)?;
    for m in members {
        let mut f = std::fs::File::open(m.path)?;
        let size = f.metadata()?.len();
        out.write_all(&header(m.name, size, mtime)?)?;
        let copied = io::copy(&mut (&mut f).take(size), out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was archived", m.path.display()),
            ));
        }
        pad(out, size)?;
    }
    // Two zero blocks end the archive.
    out.write_all(&[0u8; BLOCK * 2])?;
    Ok(mf)
}

fn write_bytes(out: &mut impl Write, name: &str, data: &[u8], mtime: u64) -> io::Result<()> {
    out.write_all(&header(name, data.len() as u64, mtime)?)?;
    out.write_all(data)?;
    pad(out, data.len() as u64)
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        out.write_all(&vec![0u8; BLOCK - rem])?;
    }
    Ok(())
}

/// The member names of an archive, in order, with their sizes (to check an OVA).
pub fn list(data: &[u8]) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + BLOCK <= data.len() {
        let h = &data[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        let size = if h[124] & 0x80 != 0 {
            u64::from_be_bytes(h[128..136].try_into().expect("8 bytes"))
        } else {
            let s = String::from_utf8_lossy(&h[124..135]);
            u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        };
        out.push((name, size));
        at += BLOCK + size.div_ceil(BLOCK as u64) as usize * BLOCK;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_reads_back() {
        let mf = manifest(&[("a.ovf", "ab".repeat(32)), ("a.vmdk", "cd".repeat(32))]);
        assert_eq!(
            mf,
            format!(
                "SHA256(a.ovf)= {}\nSHA256(a.vmdk)= {}\n",
                "ab".repeat(32),
                "cd".repeat(32)
            )
        );
        assert_eq!(
            parse_manifest(&mf).unwrap(),
            [
                ("a.ovf".to_string(), "ab".repeat(32)),
                ("a.vmdk".to_string(), "cd".repeat(32))
            ]
        );
        assert_eq!(parse_manifest("SHA1(a.ovf)= 00\n"), None);
    }

    #[test]
    fn headers_are_ustar_with_a_valid_checksum() {
        let h = header("x.ovf", 1000, 1_700_000_000).unwrap();
        assert_eq!(&h[..5], b"x.ovf");
        assert_eq!(&h[124..136], b"00000001750\0");
        assert_eq!(&h[257..263], b"ustar\0");
        assert_eq!(h[156], b'0');
        let mut copy = h;
        copy[148..156].fill(b' ');
        let sum: u32 = copy.iter().map(|&b| b as u32).sum();
        assert_eq!(&h[148..156], format!("{sum:06o}\0 ").as_bytes());
        // Past 8 GiB the size is base-256.
        let big = header("d.vmdk", 20 << 30, 0).unwrap();
        assert_eq!(big[124], 0x80);
        assert_eq!(
            u64::from_be_bytes(big[128..136].try_into().unwrap()),
            20 << 30
        );
        assert!(header("a/b", 1, 0).is_err());
        assert!(header(&"n".repeat(101), 1, 0).is_err());
    }

    #[test]
    fn the_descriptor_comes_first_and_the_manifest_next() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        std::fs::write(&disk, vec![7u8; 1500]).unwrap();
        let mut out = Vec::new();
        let mf = write_ova(
            &mut out,
            "web.ovf",
            "<Envelope/>",
            &[Member {
                name: "web.vmdk",
                path: &disk,
            }],
            0,
        )
        .unwrap();
        assert_eq!(
            list(&out).unwrap(),
            [
                ("web.ovf".to_string(), 11),
                ("web.mf".to_string(), mf.len() as u64),
                ("web.vmdk".to_string(), 1500)
            ]
        );
        assert_eq!(out.len() % 512, 0);
        let digests = parse_manifest(&mf).unwrap();
        assert_eq!(digests[0], ("web.ovf".into(), sha256_hex(b"<Envelope/>")));
        assert_eq!(digests[1], ("web.vmdk".into(), sha256_hex(&[7u8; 1500])));
        assert!(write_ova(&mut Vec::new(), "web.xml", "", &[], 0).is_err());
    }

    #[test]
    fn tar_reads_what_is_written() {
        // A second reader: GNU tar lists the members in the same order.
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        std::fs::write(&disk, b"disk bytes").unwrap();
        let ova = dir.path().join("x.ova");
        let mut f = std::fs::File::create(&ova).unwrap();
        write_ova(
            &mut f,
            "x.ovf",
            "<Envelope/>",
            &[Member {
                name: "x.vmdk",
                path: &disk,
            }],
            0,
        )
        .unwrap();
        drop(f);
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&ova)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect();
        assert_eq!(names, ["x.ovf", "x.mf", "x.vmdk"]);
    }
}
