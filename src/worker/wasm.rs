//! Structural check of a `.wasm` module before upload (no new dependency).
//!
//! Contract of [`check`]: the bytes are a WebAssembly 1.0+ *core* module as far as its outer
//! structure goes: the `\0asm` magic, version 1 (a component-model binary is refused: Workers
//! run core modules), then sections that each fit in the file, with a valid LEB128 size,
//! known ids (0–13), non-custom sections at most once and in the order the specification
//! requires (tag and data-count in their places), custom sections named in UTF-8, and as many
//! function bodies (code) as declared functions. The contents of each section (types,
//! instructions) are left to the runtime: this catches truncated, mislabelled and non-wasm
//! files, which is what a wrong file or a broken build step produces. Linear in the size.

/// The position of a non-custom section id in the required order (None: unknown id).
fn order(id: u8) -> Option<u8> {
    // type, import, function, table, memory, tag, global, export, start, element,
    // data count, code, data
    Some(match id {
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 5,
        13 => 6,
        6 => 7,
        7 => 8,
        8 => 9,
        9 => 10,
        12 => 11,
        10 => 12,
        11 => 13,
        _ => return None,
    })
}

/// Reads an unsigned LEB128 u32 at `*at`, advancing it.
fn leb_u32(bytes: &[u8], at: &mut usize) -> Result<u32, String> {
    let start = *at;
    let mut value: u64 = 0;
    for i in 0..5 {
        let Some(&b) = bytes.get(*at) else {
            return Err(format!("truncated number at byte {start}"));
        };
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).map_err(|_| format!("number too large at byte {start}"));
        }
    }
    Err(format!("number longer than 5 bytes at byte {start}"))
}

/// Checks the module structure (see the module doc); the error says what and where.
pub(crate) fn check(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(b"\0asm") {
        return Err("it does not start with the \\0asm magic number".into());
    }
    match bytes.get(4..8) {
        Some([1, 0, 0, 0]) => {}
        Some([_, _, 1, 0]) => {
            return Err(
                "it is a WebAssembly component (component model), and Workers run core modules; build a core module".into(),
            )
        }
        Some(v) => return Err(format!("unsupported version {v:?} (expected 1)")),
        None => return Err("truncated header (8 bytes expected)".into()),
    }
    let mut at = 8;
    let mut last_order = 0u8;
    let mut functions: Option<u32> = None;
    let mut bodies: Option<u32> = None;
    while at < bytes.len() {
        let section_start = at;
        let id = bytes[at];
        at += 1;
        let size = leb_u32(bytes, &mut at)? as usize;
        let end = at
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                format!(
                    "section {id} at byte {section_start} claims {size} bytes but the file ends before (truncated?)"
                )
            })?;
        if id == 0 {
            let mut p = at;
            let len = leb_u32(&bytes[..end], &mut p)? as usize;
            let name = p
                .checked_add(len)
                .filter(|&e| e <= end)
                .map(|e| &bytes[p..e])
                .ok_or_else(|| {
                    format!("custom section at byte {section_start} has a name longer than itself")
                })?;
            if std::str::from_utf8(name).is_err() {
                return Err(format!(
                    "custom section at byte {section_start} has a name that is not UTF-8"
                ));
            }
        } else {
            let Some(o) = order(id) else {
                return Err(format!("unknown section id {id} at byte {section_start}"));
            };
            if o <= last_order {
                return Err(format!(
                    "section {id} at byte {section_start} is repeated or out of order"
                ));
            }
            last_order = o;
            if id == 3 || id == 10 {
                let mut p = at;
                let count = leb_u32(&bytes[..end], &mut p)?;
                if id == 3 {
                    functions = Some(count);
                } else {
                    bodies = Some(count);
                }
            }
        }
        at = end;
    }
    if functions.unwrap_or(0) != bodies.unwrap_or(0) {
        return Err(format!(
            "it declares {} functions but has {} function bodies (truncated?)",
            functions.unwrap_or(0),
            bodies.unwrap_or(0)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`
    pub(crate) const ADD: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, // type
        0x03, 0x02, 0x01, 0x00, // function
        0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, // export "add"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b, // code
    ];

    #[test]
    fn valid_modules_pass() {
        assert_eq!(check(ADD), Ok(()));
        assert_eq!(check(b"\0asm\x01\0\0\0"), Ok(()));
        // A custom section anywhere.
        let mut with_custom = ADD.to_vec();
        with_custom.extend_from_slice(&[0x00, 0x05, 0x04, b'n', b'a', b'm', b'e']);
        assert_eq!(check(&with_custom), Ok(()));
    }

    #[test]
    fn broken_modules_are_refused_with_a_reason() {
        let truncated = &ADD[..ADD.len() - 3];
        let mut reordered = ADD[..8].to_vec();
        reordered.extend_from_slice(&ADD[17..21]); // function before type
        reordered.extend_from_slice(&ADD[8..17]);
        let mut no_code = ADD[..30].to_vec();
        no_code.truncate(30);
        let table: &[(&[u8], &str)] = &[
            (b"not wasm", "magic number"),
            (b"\0asm", "truncated header"),
            (b"\0asm\x02\0\0\0", "unsupported version"),
            (b"\0asm\x0d\0\x01\0", "component"),
            (truncated, "file ends before"),
            (&reordered, "out of order"),
            (&no_code, "declares 1 functions but has 0 function bodies"),
            (b"\0asm\x01\0\0\0\x0e\x00", "unknown section id 14"),
            (
                b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\xff",
                "longer than 5 bytes",
            ),
            (b"\0asm\x01\0\0\0\x00\x02\x05a", "name longer than itself"),
            (b"\0asm\x01\0\0\0\x00\x02\x01\xff", "not UTF-8"),
        ];
        for (bytes, want) in table {
            let err = check(bytes).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
