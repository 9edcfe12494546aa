//! A read accessor for the local edge (`lumierd run --serve`): every module Worker the local
//! API holds, as uploaded — modules, bindings (secret texts included), compatibility — so the
//! edge runs exactly what a deploy would run, never the files on disk.

use super::LocalApi;
use crate::cloudflare::types::{Binding, Module};

/// One module Worker as the local API holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedScript {
    /// The script name (`{app}-{stage}-{name}` for lumierd's own).
    pub name: String,
    /// Changes with every upload: the edge reloads a script when its etag moved.
    pub etag: String,
    /// Name of the entry module (one of `modules`).
    pub main_module: String,
    pub modules: Vec<Module>,
    /// As uploaded; secret texts included. Never log them.
    pub bindings: Vec<Binding>,
    pub compatibility_date: Option<String>,
    pub compatibility_flags: Vec<String>,
    pub tags: Vec<String>,
}

impl LocalApi {
    /// `(name, etag)` of every module Worker held, in name order: a cheap check of whether
    /// anything moved since the last [`LocalApi::served_scripts`].
    pub fn served_etags(&self) -> Vec<(String, String)> {
        self.inner.store.read(|d| {
            d.scripts
                .values()
                .filter(|s| s.main_module.is_some())
                .map(|s| (s.name.clone(), s.etag.clone()))
                .collect()
        })
    }

    /// Every module Worker held, in name order. Service-worker scripts (uploaded with a
    /// `body_part`) are left out: the edge serves module Workers only.
    pub fn served_scripts(&self) -> Vec<ServedScript> {
        self.inner.store.read(|d| {
            d.scripts
                .values()
                .filter_map(|s| {
                    Some(ServedScript {
                        name: s.name.clone(),
                        etag: s.etag.clone(),
                        main_module: s.main_module.clone()?,
                        modules: s
                            .modules
                            .iter()
                            .map(|m| Module {
                                name: m.name.clone(),
                                content_type: m.content_type.clone(),
                                content: m.content.clone(),
                            })
                            .collect(),
                        bindings: s.bindings.clone(),
                        compatibility_date: s.compatibility_date.clone(),
                        compatibility_flags: s.compatibility_flags.clone(),
                        tags: s.tags.clone(),
                    })
                })
                .collect()
        })
    }
}
