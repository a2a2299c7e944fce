//! Raw tar entries written without the tar crate's checks, as a hostile tool would: any name,
//! any type flag, any link target; names and targets over 100 bytes go in a PAX header. Shared
//! by the integration tests (through `support`) and the library's own unit tests (by path), so
//! both build hostile layers the same way.

/// One entry: a header (a PAX header first when a name is long), `data`, padding.
pub fn entry(name: &str, kind: u8, data: &[u8], link: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if name.len() > 100 || link.len() > 100 {
        let mut records = Vec::new();
        for (key, value) in [("path", name), ("linkpath", link)] {
            if value.is_empty() {
                continue;
            }
            let body = format!(" {key}={value}\n");
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            records.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        out.extend(header("PaxHeader", b'x', records.len(), ""));
        out.extend_from_slice(&records);
        pad(&mut out);
    }
    let short =
        |s: &str| s.char_indices().take_while(|(i, c)| i + c.len_utf8() <= 100).map(|(_, c)| c).collect::<String>();
    out.extend(header(&short(name), kind, data.len(), &short(link)));
    out.extend_from_slice(data);
    pad(&mut out);
    out
}

/// A ustar header block with a correct checksum.
pub fn header(name: &str, kind: u8, size: usize, link: &str) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    header[100..107].copy_from_slice(b"0000644");
    header[108..115].copy_from_slice(b"0000000");
    header[116..123].copy_from_slice(b"0000000");
    header[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    header[136..147].copy_from_slice(b"00000000000");
    header[156] = kind;
    header[157..157 + link.len()].copy_from_slice(link.as_bytes());
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    header.to_vec()
}

/// The entries followed by the two end-of-archive blocks.
pub fn tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(512) * 512, 0);
}
