//! The tar header format: writing ferry's fixed ustar headers and parsing any POSIX, PAX or GNU
//! header a reader may meet, with every length bounded.

use crate::model::manifest::MAX_BLOB_SIZE;

/// Tar's block size; headers and data are padded to it.
pub const BLOCK: u64 = 512;
/// The largest PAX or GNU long-name header ferry will read (AR-R7).
pub const MAX_EXTENSION_BYTES: u64 = 64 * 1024;

/// What a header describes, as far as ferry cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Regular,
    Directory,
    HardLink,
    Symlink,
    Device,
    Fifo,
    /// A PAX header for the next entry (`x`).
    PaxLocal,
    /// A PAX header for the whole archive (`g`); carries nothing ferry uses.
    PaxGlobal,
    /// A GNU long name for the next entry (`L`).
    GnuLongName,
    /// Anything else (GNU sparse, long link, vendor types).
    Other(u8),
}

impl HeaderKind {
    fn from_flag(flag: u8) -> Self {
        match flag {
            b'0' | 0 | b'7' => HeaderKind::Regular,
            b'5' => HeaderKind::Directory,
            b'1' => HeaderKind::HardLink,
            b'2' => HeaderKind::Symlink,
            b'3' | b'4' => HeaderKind::Device,
            b'6' => HeaderKind::Fifo,
            b'x' => HeaderKind::PaxLocal,
            b'g' => HeaderKind::PaxGlobal,
            b'L' => HeaderKind::GnuLongName,
            other => HeaderKind::Other(other),
        }
    }

    /// How a person would call this kind of entry.
    pub fn describe(self) -> &'static str {
        match self {
            HeaderKind::Regular => "regular file",
            HeaderKind::Directory => "directory",
            HeaderKind::HardLink => "hard link",
            HeaderKind::Symlink => "symbolic link",
            HeaderKind::Device => "device file",
            HeaderKind::Fifo => "named pipe",
            HeaderKind::PaxLocal | HeaderKind::PaxGlobal => "PAX extension header",
            HeaderKind::GnuLongName => "GNU long name header",
            HeaderKind::Other(_) => "special entry of an unsupported type",
        }
    }
}

/// A parsed header block.
#[derive(Debug, Clone)]
pub struct ParsedHeader {
    pub name: String,
    pub size: u64,
    pub kind: HeaderKind,
}

/// The number of bytes an entry's data occupies, padded to whole blocks.
pub fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// A place in an archive whose bytes are not what ferry writes there (spec/archive.md AR-R12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deviation {
    /// The tar padding after this entry's data is not zeros.
    Padding(String),
    /// This entry's header is not the one [`write_header`] gives for its name, size and type
    /// (extension headers, which ferry never writes, included).
    Header(String),
}

/// Whether `block` is the header ferry writes for an entry `name` of `size` bytes and `kind`.
pub fn is_ferrys_header(block: &[u8; 512], name: &str, size: u64, kind: HeaderKind) -> bool {
    let directory = match kind {
        HeaderKind::Regular => false,
        HeaderKind::Directory => true,
        _ => return false,
    };
    name.len() <= 100 && *block == write_header(name, size, directory)
}

/// What follows an archive's first end-of-archive block. ferry writes one more zero block
/// (AR-W3); what comes after the two is not part of the archive (a tape or a raw device pads
/// it), so only a file's extra length is counted, never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Whether the second end-of-archive block is there and zeros.
    pub second_block_zero: bool,
    /// Bytes after the two end blocks (a file's; a stream is not read past them).
    pub extra_bytes: u64,
}

impl Trailer {
    /// Exactly what ferry writes after the first end-of-archive block.
    pub const FERRYS: Trailer = Trailer { second_block_zero: true, extra_bytes: 0 };
}

/// Whether a block is all zeros (the end-of-archive marker).
pub fn is_zero_block(block: &[u8; 512]) -> bool {
    is_zeros(block)
}

/// Whether every byte is zero (tar padding, end blocks).
pub fn is_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// ferry's header: ustar, mode 0644 (files) or 0755 (directories), uid/gid 0, empty owner
/// names, mtime 0 (spec/archive.md AR-W4). Sizes past ustar's octal range use the base-256
/// encoding that GNU tar, Go and libarchive read.
pub fn write_header(name: &str, size: u64, directory: bool) -> [u8; 512] {
    assert!(name.len() <= 100, "ferry's entry names are at most 77 bytes");
    let mut block = [0u8; 512];
    block[..name.len()].copy_from_slice(name.as_bytes());
    write_octal(&mut block[100..108], if directory { 0o755 } else { 0o644 });
    write_octal(&mut block[108..116], 0);
    write_octal(&mut block[116..124], 0);
    if size < 8u64.pow(11) {
        write_octal(&mut block[124..136], size);
    } else {
        block[124] = 0x80;
        block[128..136].copy_from_slice(&size.to_be_bytes());
    }
    write_octal(&mut block[136..148], 0);
    block[156] = if directory { b'5' } else { b'0' };
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    write_octal(&mut block[329..337], 0);
    write_octal(&mut block[337..345], 0);
    let checksum = checksum(&block);
    write_octal(&mut block[148..155], checksum);
    block[155] = b' ';
    block
}

/// Zero-padded octal digits followed by a NUL, filling the field.
fn write_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// The checksum field's bytes, which the checksum counts as eight spaces.
const CHECKSUM_FIELD: std::ops::Range<usize> = 148..156;

/// The unsigned sum of the header with the checksum field taken as spaces. (Summed whole and
/// corrected, rather than testing each byte's position: an archive of 100,000 entries is read
/// in well under a second even by a debug build.)
fn checksum(block: &[u8; 512]) -> u64 {
    let sum = |bytes: &[u8]| bytes.iter().fold(0u64, |sum, &b| sum + u64::from(b));
    sum(block) - sum(&block[CHECKSUM_FIELD]) + 8 * 32
}

/// The same sum with each byte taken as signed, as some old tars wrote it.
fn signed_checksum(block: &[u8; 512]) -> i64 {
    let sum = |bytes: &[u8]| bytes.iter().fold(0i64, |sum, &b| sum + i64::from(b as i8));
    sum(block) - sum(&block[CHECKSUM_FIELD]) + 8 * 32
}

/// Parses one non-zero header block.
pub fn parse_header(block: &[u8; 512]) -> Result<ParsedHeader, String> {
    let stored = parse_number(&block[CHECKSUM_FIELD]).map_err(|e| format!("checksum field: {e}"))?;
    if stored != checksum(block) && i64::try_from(stored).ok() != Some(signed_checksum(block)) {
        return Err("header checksum mismatch (corrupt, or not a tar archive)".to_string());
    }
    let size = parse_number(&block[124..136]).and_then(bounded_size).map_err(|e| format!("size field: {e}"))?;
    let mut name = field_text(&block[..100]);
    if let Some(prefix) = name_prefix(block)? {
        let prefix = field_text(prefix);
        if !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
    }
    Ok(ParsedHeader { name, size, kind: HeaderKind::from_flag(block[156]) })
}

/// The field that holds the start of a long name, in the formats that have one: POSIX ustar
/// (magic `ustar\0`, version `00`; 155 bytes; with another version Go reads it and the tar
/// crate does not, so a non-empty one is refused) and its star variant (`tar\0` in the last four
/// bytes; 131 bytes). A GNU header (`ustar  \0`) keeps access and change times in those bytes and
/// a pre-POSIX header keeps nothing there: reading them as a name would make ferry see another
/// path than Go's archive/tar, the tar crate and GNU tar do for the same entry. Readers
/// disagree on a star prefix that fills its field (the tar crate reads on into star's times),
/// so that one is refused.
fn name_prefix(block: &[u8; 512]) -> Result<Option<&[u8]>, String> {
    if &block[257..263] != b"ustar\0" {
        return Ok(None);
    }
    // Go reads the prefix whatever the version; the tar crate only with `00`.
    if &block[263..265] != b"00" {
        if field_text(&block[345..500]).is_empty() {
            return Ok(None);
        }
        return Err("a ustar header of another version than 00 holds a name prefix, which tar readers read \
                    differently"
            .to_string());
    }
    if &block[508..512] != b"tar\0" {
        return Ok(Some(&block[345..500]));
    }
    let (prefix, times) = (&block[345..476], &block[476..500]);
    if !prefix.contains(&0) && !is_zeros(times) {
        return Err(
            "a star header's name prefix fills its field, which tar readers end in different places".to_string()
        );
    }
    Ok(Some(prefix))
}

/// A size as tar (and the OCI descriptor) can hold it: at most 2^63-1, so padding and offsets
/// computed from it never wrap (spec/archive.md AR-R13).
fn bounded_size(size: u64) -> Result<u64, String> {
    if size > MAX_BLOB_SIZE {
        return Err(format!("{size} is over the largest size, {MAX_BLOB_SIZE} (AR-R13)"));
    }
    Ok(size)
}

fn field_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A numeric field: octal text (padded with spaces or NULs) or GNU base-256.
fn parse_number(field: &[u8]) -> Result<u64, String> {
    if field[0] & 0x80 != 0 {
        if field[0] & 0x40 != 0 {
            return Err("negative base-256 number".to_string());
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value.checked_mul(256).and_then(|v| v.checked_add(u64::from(b))).ok_or("number overflows")?;
        }
        return Ok(value);
    }
    let text: Vec<u8> = field.iter().copied().filter(|&b| b != 0 && b != b' ').collect();
    if text.is_empty() {
        return Ok(0);
    }
    let text = std::str::from_utf8(&text).map_err(|_| "not octal".to_string())?;
    u64::from_str_radix(text, 8).map_err(|_| format!("{text:?} is not an octal number"))
}

/// The `path` and `size` records of a PAX extended header (POSIX pax "extended header").
#[derive(Debug, Default, Clone)]
pub struct PaxOverrides {
    pub path: Option<String>,
    pub size: Option<u64>,
}

/// Parses `"<len> <key>=<value>\n"` records.
pub fn parse_pax(data: &[u8]) -> Result<PaxOverrides, String> {
    let mut overrides = PaxOverrides::default();
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ').ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record length is not a number")?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err("PAX record length is out of range".to_string());
        }
        let record = &rest[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or("PAX record without '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => overrides.path = Some(String::from_utf8_lossy(value).into_owned()),
            b"size" => {
                let text = std::str::from_utf8(value).map_err(|_| "PAX size is not text")?;
                let size = text.parse().map_err(|_| format!("PAX size {text:?} is not a number"))?;
                overrides.size = Some(bounded_size(size).map_err(|e| format!("PAX size: {e}"))?);
            }
            // PAX sparse files (format 0.1 and 1.0): the entry's data is a map of holes, not the
            // file, which readers that honour the keys and readers that do not read differently.
            _ if key.starts_with(b"GNU.sparse.") => {
                return Err(format!(
                    "a PAX header declares a sparse file ({}); sparse entries are refused (AR-R3)",
                    String::from_utf8_lossy(key)
                ));
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {

    /// AR-R3 (security review a13): a PAX 1.0 sparse entry's keys are refused, not ignored.
    #[test]
    fn pax_sparse_keys_are_refused() {
        let record = |text: &str| {
            let body = format!(" {text}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            format!("{len}{body}")
        };
        for key in ["GNU.sparse.major=1", "GNU.sparse.map=0,10", "GNU.sparse.realsize=4096"] {
            let error = parse_pax(record(key).as_bytes()).expect_err(key);
            assert!(error.contains("sparse"), "{key}: {error}");
        }
        assert!(parse_pax(record("path=a/b").as_bytes()).is_ok());
    }
    use super::*;

    /// A header whose magic, version and bytes 345.. are set as given, checksum recomputed.
    fn header_with(magic: &[u8; 8], tail: &[u8], star: bool) -> [u8; 512] {
        let mut block = write_header("blobs/sha256/abc", 1, false);
        block[257..265].copy_from_slice(magic);
        block[345..345 + tail.len()].copy_from_slice(tail);
        if star {
            block[508..512].copy_from_slice(b"tar\0");
        }
        let sum = checksum(&block);
        write_octal(&mut block[148..155], sum);
        block
    }

    /// AR-R1: the prefix is read where Go's archive/tar and the tar crate read it, and nowhere
    /// else (a GNU header's time fields once made ferry see `evil/blobs/...`).
    #[test]
    fn the_name_prefix_is_read_only_in_posix_headers() {
        let cases = [
            (header_with(b"ustar\x0000", b"pre", false), "pre/blobs/sha256/abc"),
            (header_with(b"ustar  \0", b"pre", false), "blobs/sha256/abc"),
            (header_with(b"ustar\0xx", b"", false), "blobs/sha256/abc"),
            (header_with(b"ustar\x0000", &[b'p'; 130], true), &format!("{}/blobs/sha256/abc", "p".repeat(130))),
        ];
        for (block, expected) in cases {
            assert_eq!(parse_header(&block).unwrap().name, expected);
            let theirs = tar::Header::from_byte_slice(&block).path().unwrap().to_string_lossy().into_owned();
            assert_eq!(theirs, expected, "the tar crate reads another name");
        }
        let ambiguous = header_with(b"ustar\x0000", &[b'p'; 150], true);
        assert!(parse_header(&ambiguous).unwrap_err().contains("star header"));
        // Go reads this prefix, the tar crate does not: refused (review of the change).
        let versioned = header_with(b"ustar\0xx", b"pre", false);
        assert!(parse_header(&versioned).unwrap_err().contains("another version"));
    }

    #[test]
    fn written_headers_parse_back() {
        let block = write_header("blobs/sha256/abc", 1234, false);
        let parsed = parse_header(&block).unwrap();
        assert_eq!((parsed.name.as_str(), parsed.size, parsed.kind), ("blobs/sha256/abc", 1234, HeaderKind::Regular));
        let dir = parse_header(&write_header("blobs/", 0, true)).unwrap();
        assert_eq!(dir.kind, HeaderKind::Directory);
    }

    #[test]
    fn huge_sizes_use_base_256() {
        let size = 20 * 1024 * 1024 * 1024u64;
        assert_eq!(parse_header(&write_header("x", size, false)).unwrap().size, size);
    }

    #[test]
    fn a_flipped_header_byte_fails_the_checksum() {
        let mut block = write_header("index.json", 10, false);
        block[3] ^= 1;
        assert!(parse_header(&block).unwrap_err().contains("checksum"));
    }

    #[test]
    fn pax_records_override_path_and_size() {
        let pax = parse_pax(b"30 path=blobs/sha256/abcdefgh\n17 size=12345678\n").unwrap();
        assert_eq!(pax.path.as_deref(), Some("blobs/sha256/abcdefgh"));
        assert_eq!(pax.size, Some(12345678));
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"28 size=9223372036854775808\n").unwrap_err().contains("AR-R13"));
    }

    /// AR-R13: a base-256 size past 2^63-1 is refused, so padding it can never wrap.
    #[test]
    fn sizes_past_the_int64_are_refused() {
        let mut block = write_header("x", MAX_BLOB_SIZE, false);
        assert_eq!(parse_header(&block).unwrap().size, MAX_BLOB_SIZE);
        block[128..136].copy_from_slice(&u64::MAX.to_be_bytes());
        block[148..156].fill(b' ');
        let sum = checksum(&block);
        write_octal(&mut block[148..155], sum);
        assert!(parse_header(&block).unwrap_err().contains("AR-R13"));
    }
}
