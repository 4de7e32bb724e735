//! MNIST-format IDX files (`idx3-ubyte` images, `idx1-ubyte` labels), gzip or raw.

use std::io::Read;
use std::path::Path;

use super::DataError;

/// Decompress `bytes` when they start with the gzip magic; return them unchanged otherwise.
pub fn maybe_gunzip(bytes: &[u8], file: &Path) -> Result<Vec<u8>, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| DataError::corrupt(file, format!("bad gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Images: magic 0x00000803, count, rows, cols, then `count * rows * cols` bytes.
#[derive(Debug)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

pub fn parse_images(bytes: &[u8], file: &Path) -> Result<IdxImages, DataError> {
    let bytes = maybe_gunzip(bytes, file)?;
    if bytes.len() < 16 {
        return Err(DataError::corrupt(
            file,
            "truncated IDX header (need 16 bytes)",
        ));
    }
    let magic = be_u32(&bytes, 0);
    if magic != 0x0803 {
        return Err(DataError::corrupt(
            file,
            format!("wrong magic {magic:#010x}, expected 0x00000803 (IDX uint8 images)"),
        ));
    }
    let (count, rows, cols) = (
        be_u32(&bytes, 4) as usize,
        be_u32(&bytes, 8) as usize,
        be_u32(&bytes, 12) as usize,
    );
    let need = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| DataError::corrupt(file, "image dimensions overflow"))?;
    if rows == 0 || cols == 0 {
        return Err(DataError::corrupt(file, "zero-sized images"));
    }
    if bytes.len() - 16 != need {
        return Err(DataError::corrupt(
            file,
            format!("header says {count} images of {rows}x{cols} ({need} bytes) but the file holds {} bytes", bytes.len() - 16),
        ));
    }
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[16..].to_vec(),
    })
}

/// Labels: magic 0x00000801, count, then `count` bytes.
pub fn parse_labels(bytes: &[u8], file: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = maybe_gunzip(bytes, file)?;
    if bytes.len() < 8 {
        return Err(DataError::corrupt(
            file,
            "truncated IDX header (need 8 bytes)",
        ));
    }
    let magic = be_u32(&bytes, 0);
    if magic != 0x0801 {
        return Err(DataError::corrupt(
            file,
            format!("wrong magic {magic:#010x}, expected 0x00000801 (IDX uint8 labels)"),
        ));
    }
    let count = be_u32(&bytes, 4) as usize;
    if bytes.len() - 8 != count {
        return Err(DataError::corrupt(
            file,
            format!(
                "header says {count} labels but the file holds {}",
                bytes.len() - 8
            ),
        ));
    }
    Ok(bytes[8..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: u32, rows: u32, cols: u32, extra: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [0x803, count, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.resize(16 + (count * rows * cols) as usize + extra, 7);
        v
    }

    #[test]
    fn parses_raw_and_gzip() {
        let raw = images(3, 2, 2, 0);
        let p = Path::new("x");
        assert_eq!(parse_images(&raw, p).unwrap().count, 3);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let parsed = parse_images(&gz.finish().unwrap(), p).unwrap();
        assert_eq!(
            (parsed.count, parsed.rows, parsed.cols, parsed.pixels.len()),
            (3, 2, 2, 12)
        );
    }

    #[test]
    fn rejects_bad_files_with_the_file_name() {
        let p = Path::new("some/images.idx");
        let mut wrong = images(1, 2, 2, 0);
        wrong[3] = 0x01;
        let e = parse_images(&wrong, p).unwrap_err().to_string();
        assert!(e.contains("some/images.idx") && e.contains("magic"), "{e}");
        let truncated = images(3, 2, 2, 0);
        let e = parse_images(&truncated[..20], p).unwrap_err().to_string();
        assert!(e.contains("holds"), "{e}");
        assert!(parse_images(&truncated[..5], p).is_err());
        assert!(parse_images(&[0x1f, 0x8b, 1, 2, 3], p)
            .unwrap_err()
            .to_string()
            .contains("gzip"));
        assert!(parse_labels(&[0, 0, 8, 1, 0, 0, 0, 5, 1], p)
            .unwrap_err()
            .to_string()
            .contains("labels"));
        // A header whose product overflows must not allocate or panic.
        let huge = images(0, 0, 0, 0);
        let mut huge = huge;
        huge[4..16].copy_from_slice(&[0xff; 12]);
        assert!(parse_images(&huge, p).is_err());
    }
}
