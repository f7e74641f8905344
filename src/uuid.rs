//! Random (version 4) UUIDs for `event_id`: a fresh one per ban attempt, so that prefixd, which
//! stores an event before checking it, never answers 409 to a retry.

pub fn v4() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format_v4(bytes))
}

/// Sets the version (4) and variant (RFC 4122) bits and prints the 8-4-4-4-12 form.
fn format_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_version_and_variant() {
        for _ in 0..200 {
            let id = v4().expect("getrandom");
            assert_eq!(id.len(), 36, "{id}");
            for (i, c) in id.char_indices() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    assert_eq!(c, '-', "{id}");
                } else {
                    assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{id}");
                }
            }
            assert_eq!(&id[14..15], "4", "version nibble in {id}");
            assert!(
                matches!(&id[19..20], "8" | "9" | "a" | "b"),
                "variant in {id}"
            );
        }
    }

    #[test]
    fn fixed_bytes_format_exactly() {
        assert_eq!(format_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
        assert_eq!(
            format_v4([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
    }

    #[test]
    fn ids_differ() {
        let a = v4().expect("getrandom");
        let b = v4().expect("getrandom");
        assert_ne!(a, b);
    }
}
