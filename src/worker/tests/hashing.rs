//! The content hash (of the uploaded bytes only) and the bundle's description and size check.

use super::*;

#[test]
fn content_hash_is_stable_and_tracks_uploaded_bytes_only() {
    let dir = app();
    let entry = dir.path().join("api/src/index.ts");
    let first = build(dir.path(), &entry).unwrap();
    let second = build(dir.path(), &entry).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.content_hash.len(), 64);
    assert!(first.content_hash.bytes().all(|b| b.is_ascii_hexdigit()));

    // A file the entry does not reach, and a change of formatting the transpiler erases.
    write(dir.path(), "api/manifest.yaml", b"unrelated: false\n");
    write(dir.path(), "api/src/unused.ts", b"export const u = 1;\n");
    assert_eq!(
        build(dir.path(), &entry).unwrap().content_hash,
        first.content_hash
    );

    write(
        dir.path(),
        "api/src/lib.ts",
        LIB_TS.replace("hello", "hi").as_bytes(),
    );
    let changed = build(dir.path(), &entry).unwrap();
    assert_ne!(changed.content_hash, first.content_hash);

    write(dir.path(), "api/src/lib.ts", LIB_TS.as_bytes());
    assert_eq!(
        build(dir.path(), &entry).unwrap().content_hash,
        first.content_hash
    );

    // A data module's bytes count too.
    write(dir.path(), "api/src/data.json", br#"{ "name": "other" }"#);
    assert_ne!(
        build(dir.path(), &entry).unwrap().content_hash,
        first.content_hash
    );
}

#[test]
fn content_hash_does_not_depend_on_the_location_of_the_tree() {
    let a = app();
    let b = app();
    let ha = build(a.path(), &a.path().join("api/src/index.ts")).unwrap();
    let hb = build(b.path(), &b.path().join("api/src/index.ts")).unwrap();
    assert_eq!(ha.content_hash, hb.content_hash);
}

#[test]
fn describe_and_check_size() {
    let dir = app();
    let bundle = build(dir.path(), &dir.path().join("api/src/index.ts")).unwrap();
    let lines = describe(&bundle);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "data.json (application/json, 21 bytes)");
    assert!(lines[1].starts_with("index.js (application/javascript+module, "));
    assert!(lines[1].ends_with(" bytes)"));

    assert!(check_size(&bundle, MAX_SIZE_FREE).is_ok());
    assert!(check_size(&bundle, bundle.total_size).is_ok());
    let msg = check_size(&bundle, bundle.total_size - 1)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("total {} bytes", bundle.total_size)),
        "{msg}"
    );
    let biggest = bundle
        .modules
        .iter()
        .max_by_key(|m| m.content.len())
        .unwrap();
    assert!(
        msg.contains(&format!(
            "largest: {} ({} bytes)",
            biggest.name,
            biggest.content.len()
        )),
        "{msg}"
    );
}
