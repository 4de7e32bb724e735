//! NumPy `.npy` files of float32 arrays: latents in, raw images out, so results can be compared
//! with Python tools exactly. Reads versions 1-3, little-endian `<f4`, C order; writes version 1.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NpyError {
    #[error("not a .npy file (bad magic)")]
    BadMagic,
    #[error("truncated .npy file")]
    Truncated,
    #[error("unsupported .npy header: {0}")]
    Header(String),
    #[error("data holds {actual} bytes, shape {shape:?} needs {expected}")]
    Size {
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
}

/// A float32 array.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// The value of `'key': value` in a header dict, up to the next top-level comma or brace.
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

pub fn parse(bytes: &[u8]) -> Result<Array, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or(NpyError::Truncated)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(NpyError::Header(format!("version {v}"))),
    };
    let header = bytes
        .get(start..start.checked_add(header_len).ok_or(NpyError::Truncated)?)
        .ok_or(NpyError::Truncated)?;
    let header = std::str::from_utf8(header).map_err(|_| NpyError::Header("not text".into()))?;
    let descr = field(header, "descr").ok_or_else(|| NpyError::Header("no descr".into()))?;
    if descr != "'<f4'" {
        return Err(NpyError::Header(format!(
            "dtype {descr}; only little-endian float32 ('<f4') is read"
        )));
    }
    if field(header, "fortran_order") != Some("False") {
        return Err(NpyError::Header("only C order is read".into()));
    }
    let shape_text = field(header, "shape").ok_or_else(|| NpyError::Header("no shape".into()))?;
    let shape: Vec<usize> = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| NpyError::Header(format!("shape {shape_text}")))
        })
        .collect::<Result<_, _>>()?;
    let data = &bytes[start + header_len..];
    let expected = shape
        .iter()
        .try_fold(4usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::Header(format!("shape {shape:?} overflows")))?;
    if data.len() != expected {
        return Err(NpyError::Size {
            shape,
            expected,
            actual: data.len(),
        });
    }
    let data = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Array { shape, data })
}

pub fn encode(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that the data starts on a 64-byte boundary, ending the header with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    data.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_files() {
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        let bytes = encode(&[3, 4], &data);
        assert_eq!(
            (bytes.len() - 48) % 64,
            0,
            "data starts on a 64-byte boundary"
        );
        assert_eq!(
            parse(&bytes).unwrap(),
            Array {
                shape: vec![3, 4],
                data: data.clone()
            }
        );
        assert_eq!(
            parse(&bytes[..bytes.len() - 1]).unwrap_err(),
            NpyError::Size {
                shape: vec![3, 4],
                expected: 48,
                actual: 47
            }
        );
        assert_eq!(
            parse(b"PK\x03\x04 not numpy").unwrap_err(),
            NpyError::BadMagic
        );
        let mut f8 = bytes.clone();
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'8';
        assert!(matches!(parse(&f8), Err(NpyError::Header(_))));
        for cut in 0..bytes.len() {
            let _ = parse(&bytes[..cut]);
        }
    }
}
