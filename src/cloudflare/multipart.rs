//! Parsing of `multipart/form-data` *response* bodies (the script content endpoint answers
//! with one part per module). Request bodies are built with `reqwest::multipart`.
//!
//! The whole body is in memory (script content is at most a few MiB), so this is a plain
//! slice parser: RFC 7578 / RFC 2046 framing, CRLF line ends (bare LF tolerated in part
//! headers), `Content-Disposition` `name`, `filename` and RFC 5987 `filename*`.

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field name (`Content-Disposition: form-data; name=…`).
    pub name: Option<String>,
    /// The file name (`filename=` or `filename*=`), if any.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The raw bytes of the part body.
    pub data: Vec<u8>,
}

/// Extracts the `boundary` parameter from a `multipart/*` content type, or `None` when the
/// content type is not multipart or has no boundary.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim().to_ascii_lowercase();
    if !mime.starts_with("multipart/") {
        return None;
    }
    params.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("boundary") {
            let value = unquote(value.trim());
            (!value.is_empty()).then_some(value)
        } else {
            None
        }
    })
}

/// Splits `body` into parts delimited by `boundary`. Errors describe the first framing
/// problem found (missing opening delimiter, unterminated part or headers).
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    if boundary.is_empty() {
        return Err("empty multipart boundary".to_owned());
    }
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The opening delimiter is at the very start or after a preamble ending in CRLF.
    let mut pos = if body.starts_with(opening.as_bytes()) {
        opening.len()
    } else {
        find(body, delimiter.as_bytes(), 0)
            .map(|at| at + delimiter.len())
            .ok_or_else(|| format!("multipart body has no opening boundary {opening:?}"))?
    };
    let mut parts = Vec::new();
    loop {
        // After a delimiter: "--" closes the body; otherwise optional whitespace, then CRLF.
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        while pos < body.len() && (body[pos] == b' ' || body[pos] == b'\t') {
            pos += 1;
        }
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        } else if body[pos..].starts_with(b"\n") {
            pos += 1;
        } else {
            return Err(format!(
                "multipart part {} does not start with a line break",
                parts.len() + 1
            ));
        }
        let (headers_end, body_start) = if body[pos..].starts_with(b"\r\n") {
            (pos, pos + 2) // a part without headers
        } else {
            let crlf = find(body, b"\r\n\r\n", pos).map(|at| (at, at + 4));
            let lf = find(body, b"\n\n", pos).map(|at| (at, at + 2));
            match (crlf, lf) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => {
                    return Err(format!(
                        "multipart part {} has unterminated headers",
                        parts.len() + 1
                    ))
                }
            }
        };
        let headers = String::from_utf8_lossy(&body[pos..headers_end]);
        let end = find(body, delimiter.as_bytes(), body_start).ok_or_else(|| {
            format!(
                "multipart part {} is not terminated by a boundary",
                parts.len() + 1
            )
        })?;
        let mut part = Part {
            name: None,
            filename: None,
            content_type: None,
            data: body[body_start..end].to_vec(),
        };
        for line in headers.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                for (k, v) in disposition_params(value) {
                    match k.as_str() {
                        "name" => part.name = Some(v),
                        "filename" if part.filename.is_none() => part.filename = Some(v),
                        "filename*" => {
                            if let Some(decoded) = decode_ext_value(&v) {
                                part.filename = Some(decoded);
                            }
                        }
                        _ => {}
                    }
                }
            } else if key.trim().eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.to_owned());
            }
        }
        parts.push(part);
        pos = end + delimiter.len();
    }
}

/// Finds `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() || haystack.len() - from < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = from;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                let at = i + off;
                if &haystack[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// Parses `form-data; name="a"; filename="b.js"` into lower-cased keys and unquoted values.
fn disposition_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match value.split_once(';') {
        Some((_, rest)) => rest,
        None => return out,
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return out;
        }
        let Some(eq) = rest.find('=') else {
            return out;
        };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut consumed = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            v.push(next);
                        }
                    }
                    '"' => {
                        consumed = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            rest = &quoted[consumed..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        out.push((key, value));
    }
}

/// Decodes an RFC 5987 ext-value `utf-8''na%C3%AFve.js` (charset must be UTF-8).
fn decode_ext_value(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let charset = pieces.next()?;
    let _language = pieces.next()?;
    let encoded = pieces.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    String::from_utf8(percent_decode(encoded.as_bytes())).ok()
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc123").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            boundary(r#"Multipart/Form-Data;charset=utf-8; Boundary="a b""#).as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/javascript"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn parses_modules() {
        let body = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"index.js\"; filename=\"index.js\"\r\n\
Content-Type: application/javascript+module\r\n\
\r\n\
export default { fetch() { return new Response(\"--XyZ inside\") } }\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"data.bin\"; filename=\"data.bin\"\r\n\
Content-Type: application/octet-stream\r\n\
\r\n\
\x00\x01\r\n\x02\r\n\
--XyZ\r\n\
content-disposition: form-data; name=\"files\"; filename*=utf-8''na%C3%AFve.js\r\n\
\r\n\
x\r\n\
--XyZ--\r\n";
        let parts = parse(body, "XyZ").expect("parses");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name.as_deref(), Some("index.js"));
        assert_eq!(parts[0].filename.as_deref(), Some("index.js"));
        assert_eq!(
            parts[0].content_type.as_deref(),
            Some("application/javascript+module")
        );
        assert_eq!(
            parts[0].data,
            b"export default { fetch() { return new Response(\"--XyZ inside\") } }".to_vec()
        );
        assert_eq!(parts[1].data, b"\x00\x01\r\n\x02".to_vec());
        assert_eq!(parts[2].name.as_deref(), Some("files"));
        assert_eq!(parts[2].filename.as_deref(), Some("naïve.js"));
        assert_eq!(parts[2].content_type, None);
        assert_eq!(parts[2].data, b"x".to_vec());
    }

    #[test]
    fn preamble_empty_parts_and_headerless_parts() {
        let body = b"preamble\r\n--b\r\n\r\n\r\n--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--";
        let parts = parse(body, "b").expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, None);
        assert!(parts[0].data.is_empty());
        assert_eq!(parts[1].name.as_deref(), Some("a"));
        assert_eq!(parts[1].data, b"v".to_vec());
        assert_eq!(parse(b"--b--\r\n", "b").expect("empty"), Vec::new());
    }

    #[test]
    fn framing_errors() {
        assert!(parse(b"no boundary here", "b").is_err());
        assert!(parse(b"--b\r\nContent-Type: x\r\n\r\nunterminated", "b").is_err());
        assert!(parse(b"--b\r\nContent-Type: x", "b").is_err());
        assert!(parse(b"--bjunk", "b").is_err());
        assert!(parse(b"--b--", "").is_err());
    }

    #[test]
    fn disposition_quoting() {
        let p = disposition_params(r#"form-data; name="a\"b;c"; filename=plain.js"#);
        assert_eq!(
            p,
            vec![
                ("name".to_owned(), "a\"b;c".to_owned()),
                ("filename".to_owned(), "plain.js".to_owned())
            ]
        );
        assert_eq!(percent_decode(b"a%2Fb%zz%4"), b"a/b%zz%4".to_vec());
    }
}
