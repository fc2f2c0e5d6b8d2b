//! Preloaded snapshots (`--preload MODULE,...`).
//!
//! The guest component is pre-initialised once at build time (componentize-py
//! runs the interpreter, imports the agent and the common stdlib modules, and
//! snapshots the memory). A preload does the same once more, at run time, on
//! top of that component: a session is started on it with the sandbox's
//! `--path` directories mounted (read-only, at their host paths), the modules
//! are imported, and `component-init-transform` snapshots the instance's
//! memory and globals into a new component. Sessions of that component start
//! with the modules already imported, at the cost of a plain fresh session
//! (copy-on-write pages of the larger image).
//!
//! Two pieces of state must not survive into the snapshot: the WASI preview-1
//! adapter's table of descriptors (stdio and preopened directories, handles
//! of resources that exist only in this instance) and wasi-libc's table of
//! preopens. componentize-py clears both at the end of its own
//! initialisation; neither function is reachable from the host, so before
//! the snapshot is taken they are exported from the component (an alias of
//! the core export, lifted as `func()`) and called.

use std::path::{Path, PathBuf};

use wasmparser::{
    CanonicalFunction, ComponentAlias, ComponentExternalKind, ComponentTypeRef, Instance as Core,
    Parser, Payload,
};
// component-init-transform's `Invoker` trait is written with anyhow's
// `Result`; the transform's errors are turned into `PreloadError`s at once.
use wasmtime::anyhow as transform;
use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use super::instance::{HostState, Instance, SessionLink};
use super::{SandboxError, SessionConfig, boxed};
use crate::protocol::{Op, Reply};

/// The component exports added for the snapshot (see the module docs).
const RESET_ADAPTER: &str = "pushy-reset-adapter-state";
const RESET_PREOPENS: &str = "pushy-reset-preopens";

/// Why a preloaded snapshot could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreloadError {
    /// A module named by `--preload` raised while it was imported.
    #[error("--preload {module}: importing it failed in the sandbox:\n{traceback}")]
    Import {
        /// The module.
        module: String,
        /// The Python traceback.
        traceback: String,
    },
    /// A module name that cannot be a module.
    #[error("--preload {0:?}: not a module name (expected names like json or xml.dom)")]
    BadName(String),
    /// The import ended the session (time or memory limit, a trap).
    #[error("--preload {module}: the session ended while importing it: {reason}")]
    Ended {
        /// The module.
        module: String,
        /// What ended it.
        reason: String,
    },
    /// The component does not have the shape the snapshot needs (a bug).
    #[error("the guest component cannot be snapshotted: {0}")]
    Shape(String),
    /// Snapshotting failed (instrumenting, reading the state, rewriting).
    #[error("snapshotting the preloaded session failed")]
    Snapshot(#[source] super::BoxError),
    /// The session for the preload could not start.
    #[error("the preload session could not start")]
    Start(#[source] Box<SandboxError>),
}

/// Checks a `--preload` module name: dotted Python identifiers.
pub fn check_name(name: &str) -> Result<(), PreloadError> {
    let ok = !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(PreloadError::BadName(name.to_owned()))
    }
}

/// Builds the preloaded component: `base` with `modules` imported into a
/// session of `config` (its python path mounted), snapshotted. The session
/// runs on a thread of its own with `stack_size`, like every session: the
/// blocking WASI calls must not run on a thread of an async runtime.
pub(super) fn build(
    engine: &Engine,
    linker: &wasmtime::component::Linker<HostState>,
    base: &'static [u8],
    config: &SessionConfig,
    modules: &[String],
    stack_size: usize,
    instrumented_cache: Option<PathBuf>,
) -> Result<Vec<u8>, PreloadError> {
    for module in modules {
        check_name(module)?;
    }
    // Only the python path is mounted (and keyed): a `--dir` mount's files
    // are not part of the snapshot's key, so nothing may be imported from them.
    let mut config = config.clone();
    config.mounts.clear();
    let (engine, linker, modules) = (engine.clone(), linker.clone(), modules.to_vec());
    std::thread::Builder::new()
        .name("pushy-preload".into())
        .stack_size(stack_size)
        .spawn(move || {
            build_here(
                &engine,
                &linker,
                base,
                &config,
                &modules,
                instrumented_cache.as_deref(),
            )
        })
        .map_err(|e| PreloadError::Start(Box::new(SandboxError::Thread(e))))?
        .join()
        .map_err(|_| PreloadError::Start(Box::new(SandboxError::SetupPanicked)))?
}

fn build_here(
    engine: &Engine,
    linker: &wasmtime::component::Linker<HostState>,
    base: &[u8],
    config: &SessionConfig,
    modules: &[String],
    instrumented_cache: Option<&Path>,
) -> Result<Vec<u8>, PreloadError> {
    let augmented = export_resets(base)?;
    let instrumented_cache = instrumented_cache.map(Path::to_path_buf);
    let engine = engine.clone();
    let linker = linker.clone();
    let config = config.clone();
    let modules = modules.to_vec();
    // Errors of the closure travel through the transform as anyhow errors;
    // the typed one is kept aside and preferred.
    let failure = std::sync::Arc::new(std::sync::Mutex::new(None::<PreloadError>));
    let kept = failure.clone();
    let result = futures::executor::block_on(component_init_transform::initialize(
        &augmented,
        move |instrumented| {
            Box::pin(async move {
                let session = preload_session(
                    &engine,
                    &linker,
                    &instrumented,
                    instrumented_cache.as_deref(),
                    &config,
                    &modules,
                );
                match session {
                    Ok(invoker) => {
                        Ok(Box::new(invoker) as Box<dyn component_init_transform::Invoker>)
                    }
                    Err(error) => {
                        let text = error.to_string();
                        *kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        Err(transform::Error::msg(text))
                    }
                }
            })
        },
    ));
    match result {
        Ok(bytes) => Ok(bytes),
        Err(error) => Err(failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| PreloadError::Snapshot(error.into()))),
    }
}

/// Starts a session on the instrumented component, imports the modules and
/// clears what must not be snapshotted; the session is then read out.
fn preload_session(
    engine: &Engine,
    linker: &wasmtime::component::Linker<HostState>,
    instrumented: &[u8],
    instrumented_cache: Option<&Path>,
    config: &SessionConfig,
    modules: &[String],
) -> Result<Measure, PreloadError> {
    let start = |error: SandboxError| PreloadError::Start(Box::new(error));
    // The instrumented component depends on the base component only: its
    // compiled code is cached, so a preload compiles one component, not two.
    let component = super::cache::load_or_build(engine, instrumented_cache, || {
        Component::new(engine, instrumented).map_err(|e| SandboxError::Compile(boxed(e)))
    })
    .map_err(start)?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|e| start(SandboxError::Link(boxed(e))))?;
    let mut raw = None;
    let mut instance = Instance::start(engine, config, Box::new(PreloadLink), |store| {
        let instance = instance_pre.instantiate(&mut *store)?;
        raw = Some(instance);
        super::bindings::Agent::new(store, &instance)
    })
    .map_err(|failure| start(failure.error))?;
    let raw = raw.ok_or_else(|| PreloadError::Shape("no instance".into()))?;
    instance
        .install_python_path(config)
        .map_err(|reason| PreloadError::Ended {
            module: modules.join(","),
            reason,
        })?;
    for module in modules {
        match instance.dispatch(Op::ImportModule(module.clone())) {
            Ok(Reply::Ok(_)) => {}
            Ok(Reply::Error(error)) => {
                return Err(PreloadError::Import {
                    module: module.clone(),
                    traceback: error.traceback,
                });
            }
            Err(failure) => {
                return Err(PreloadError::Ended {
                    module: module.clone(),
                    reason: failure.to_string(),
                });
            }
        }
    }
    // The session's own state (the handles just sent, the seed, the clock)
    // goes back to what a fresh session has.
    let reset = "__import__('agent')._session.reset_for_snapshot()";
    match instance.dispatch(Op::Execute(reset.into())) {
        Ok(Reply::Ok(_)) => {}
        Ok(Reply::Error(error)) => return Err(PreloadError::Shape(error.traceback)),
        Err(failure) => return Err(PreloadError::Shape(failure.to_string())),
    }
    let mut store = instance.into_store();
    for name in [RESET_ADAPTER, RESET_PREOPENS] {
        raw.get_typed_func::<(), ()>(&mut store, name)
            .and_then(|func| func.call(&mut store, ()))
            .map_err(|e| PreloadError::Shape(format!("{name}: {e:#}")))?;
    }
    Ok(Measure {
        store,
        instance: raw,
    })
}

/// The preload session's local side: nobody. What the imports print (a
/// warning, a banner) is dropped; a callback or a read of stdin finds the
/// local side gone.
struct PreloadLink;

impl SessionLink for PreloadLink {
    fn recv(&mut self) -> Option<crate::protocol::ClientMessage> {
        None
    }
    fn send(&mut self, message: crate::protocol::ServerMessage) -> bool {
        matches!(message, crate::protocol::ServerMessage::Output { .. })
    }
}

/// Reads the snapshotted state out of the preload session.
struct Measure {
    store: Store<HostState>,
    instance: wasmtime::component::Instance,
}

impl Measure {
    fn call<R>(&mut self, function: &str) -> transform::Result<R>
    where
        R: wasmtime::component::ComponentType + wasmtime::component::Lift + Send + Sync + 'static,
    {
        let func = self
            .instance
            .get_typed_func::<(), (R,)>(&mut self.store, function)
            .map_err(|e| transform::Error::msg(format!("{function}: {e:#}")))?;
        let (value,) = func
            .call(&mut self.store, ())
            .map_err(|e| transform::Error::msg(format!("{function}: {e:#}")))?;
        Ok(value)
    }
}

#[async_trait::async_trait]
impl component_init_transform::Invoker for Measure {
    async fn call_s32(&mut self, function: &str) -> transform::Result<i32> {
        self.call(function)
    }
    async fn call_s64(&mut self, function: &str) -> transform::Result<i64> {
        self.call(function)
    }
    async fn call_f32(&mut self, function: &str) -> transform::Result<f32> {
        self.call(function)
    }
    async fn call_f64(&mut self, function: &str) -> transform::Result<f64> {
        self.call(function)
    }
    async fn call_list_u8(&mut self, function: &str) -> transform::Result<Vec<u8>> {
        self.call(function)
    }
}

/// `component` with two more exports, `func()`s that reset the preview-1
/// adapter's state and wasi-libc's preopens (the core functions the
/// componentize-py runtime calls at the end of its initialisation).
fn export_resets(component: &[u8]) -> Result<Vec<u8>, PreloadError> {
    let shape = Shape::read(component)?;
    let adapter = shape
        .instance_exporting(&["reset_adapter_state", "cabi_import_realloc"])
        .ok_or_else(|| PreloadError::Shape("no preview-1 adapter instance".into()))?;
    let libc = shape
        .instance_exporting(&["__wasilibc_reset_preopens"])
        .ok_or_else(|| PreloadError::Shape("no wasi-libc instance".into()))?;
    use wasm_encoder::{
        Alias, CanonicalFunctionSection, ComponentAliasSection, ComponentExportKind,
        ComponentExportSection, ComponentTypeSection, ExportKind,
    };
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: adapter,
        kind: ExportKind::Func,
        name: "reset_adapter_state",
    });
    aliases.alias(Alias::CoreInstanceExport {
        instance: libc,
        kind: ExportKind::Func,
        name: "__wasilibc_reset_preopens",
    });
    let mut types = ComponentTypeSection::new();
    types
        .function()
        .params(std::iter::empty::<(&str, wasm_encoder::ComponentValType)>())
        .result(None);
    let mut lifts = CanonicalFunctionSection::new();
    lifts.lift(shape.core_funcs, shape.types, []);
    lifts.lift(shape.core_funcs + 1, shape.types, []);
    let mut exports = ComponentExportSection::new();
    exports.export(RESET_ADAPTER, ComponentExportKind::Func, shape.funcs, None);
    exports.export(
        RESET_PREOPENS,
        ComponentExportKind::Func,
        shape.funcs + 1,
        None,
    );
    let mut tail = wasm_encoder::Component::new();
    tail.section(&aliases)
        .section(&types)
        .section(&lifts)
        .section(&exports);
    // A component is its header and then sections: the new ones go after
    // the last, which may refer to anything defined before.
    let tail = tail.finish();
    let header = 8;
    let mut out = Vec::with_capacity(component.len() + tail.len());
    out.extend_from_slice(component);
    out.extend_from_slice(&tail[header..]);
    Ok(out)
}

/// The top-level index spaces of a component that the new exports extend,
/// and the export names of each core instance it instantiates.
#[derive(Default)]
struct Shape {
    core_funcs: u32,
    funcs: u32,
    types: u32,
    /// Core instance index -> the export names of its module (empty for
    /// instances made of exports).
    core_instances: Vec<Vec<String>>,
}

impl Shape {
    fn read(component: &[u8]) -> Result<Shape, PreloadError> {
        let shape_error = |e: wasmparser::BinaryReaderError| PreloadError::Shape(e.to_string());
        let mut shape = Shape::default();
        // Export names of each top-level core module, in index order.
        let mut modules: Vec<Vec<String>> = Vec::new();
        // Nesting: true for a core module, false for a nested component.
        let mut nested: Vec<bool> = Vec::new();
        for payload in Parser::new(0).parse_all(component) {
            let payload = payload.map_err(shape_error)?;
            if let Some(&in_module) = nested.last() {
                match payload {
                    Payload::ExportSection(reader) if in_module && nested.len() == 1 => {
                        let names = modules.last_mut().expect("a module is open");
                        for export in reader {
                            names.push(export.map_err(shape_error)?.name.to_owned());
                        }
                    }
                    Payload::ModuleSection { .. } => nested.push(true),
                    Payload::ComponentSection { .. } => nested.push(false),
                    Payload::End(_) => {
                        nested.pop();
                    }
                    _ => {}
                }
                continue;
            }
            match payload {
                Payload::ModuleSection { .. } => {
                    modules.push(Vec::new());
                    nested.push(true);
                }
                Payload::ComponentSection { .. } => nested.push(false),
                Payload::InstanceSection(reader) => {
                    for instance in reader {
                        let exports = match instance.map_err(shape_error)? {
                            Core::Instantiate { module_index, .. } => modules
                                .get(module_index as usize)
                                .cloned()
                                .unwrap_or_default(),
                            Core::FromExports(_) => Vec::new(),
                        };
                        shape.core_instances.push(exports);
                    }
                }
                Payload::ComponentTypeSection(reader) => shape.types += reader.count(),
                Payload::ComponentImportSection(reader) => {
                    for import in reader {
                        match import.map_err(shape_error)?.ty {
                            ComponentTypeRef::Func(_) => shape.funcs += 1,
                            ComponentTypeRef::Type(_) => shape.types += 1,
                            ComponentTypeRef::Module(_) => {
                                return Err(PreloadError::Shape("imports a core module".into()));
                            }
                            _ => {}
                        }
                    }
                }
                Payload::ComponentExportSection(reader) => {
                    for export in reader {
                        match export.map_err(shape_error)?.kind {
                            ComponentExternalKind::Func => shape.funcs += 1,
                            ComponentExternalKind::Type => shape.types += 1,
                            ComponentExternalKind::Module => modules.push(Vec::new()),
                            _ => {}
                        }
                    }
                }
                Payload::ComponentAliasSection(reader) => {
                    for alias in reader {
                        match alias.map_err(shape_error)? {
                            ComponentAlias::InstanceExport { kind, .. } => match kind {
                                ComponentExternalKind::Func => shape.funcs += 1,
                                ComponentExternalKind::Type => shape.types += 1,
                                ComponentExternalKind::Module => modules.push(Vec::new()),
                                _ => {}
                            },
                            ComponentAlias::CoreInstanceExport { kind, .. } => {
                                if kind == wasmparser::ExternalKind::Func {
                                    shape.core_funcs += 1;
                                }
                            }
                            ComponentAlias::Outer { kind, .. } => match kind {
                                wasmparser::ComponentOuterAliasKind::Type => shape.types += 1,
                                wasmparser::ComponentOuterAliasKind::CoreModule => {
                                    modules.push(Vec::new())
                                }
                                _ => {}
                            },
                        }
                    }
                }
                Payload::ComponentCanonicalSection(reader) => {
                    for canonical in reader {
                        match canonical.map_err(shape_error)? {
                            CanonicalFunction::Lift { .. } => shape.funcs += 1,
                            _ => shape.core_funcs += 1,
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    /// The first core instance whose module exports all of `names`.
    fn instance_exporting(&self, names: &[&str]) -> Option<u32> {
        self.core_instances
            .iter()
            .position(|exports| names.iter().all(|n| exports.iter().any(|e| e == n)))
            .map(|index| index as u32)
    }
}

/// Where a preloaded snapshot of `modules` over `python_path` is cached,
/// under `dir`: the name carries the base component's hash (so builds of
/// other binaries are told apart and pruned) and a hash of the modules, the
/// paths and the state of every file under them.
pub(super) fn cache_key(component_sha256: &str, modules: &[String], roots: &[PathBuf]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(component_sha256.as_bytes());
    for module in modules {
        hasher.update(b"\0module\0");
        hasher.update(module.as_bytes());
    }
    for root in roots {
        hasher.update(b"\0root\0");
        hasher.update(root.as_os_str().as_encoded_bytes());
        digest_tree(&mut hasher, root);
    }
    hex::encode(hasher.finalize())
}

/// Feeds the names, sizes and modification times of every file under
/// `root` (or of `root` itself) into `hasher`, in a stable order, and the
/// content of the Python sources, path files and archives among them (a
/// copy that keeps the modification time still changes the key).
fn digest_tree(hasher: &mut sha2::Sha256, root: &Path) {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            hasher.update(b"\0missing\0");
            continue;
        };
        hasher.update(b"\0entry\0");
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update(meta.len().to_le_bytes());
        hasher.update(meta.mtime().to_le_bytes());
        hasher.update(meta.mtime_nsec().to_le_bytes());
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            children.sort();
            // Popped from the end: reversed, to walk in sorted order.
            pending.extend(children.into_iter().rev());
        } else if meta.is_file()
            && path.extension().is_some_and(|ext| {
                ["py", "pth", "whl", "zip"]
                    .iter()
                    .any(|known| ext.eq_ignore_ascii_case(known))
            })
            && let Ok(content) = std::fs::read(&path)
        {
            hasher.update(&content);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_are_dotted_identifiers() {
        for good in ["json", "xml.dom.minidom", "_pytest", "é"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "1abc",
            "a-b",
            "os; import sys",
            "a b",
        ] {
            assert!(
                matches!(check_name(bad), Err(PreloadError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_key_follows_modules_paths_and_file_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.py");
        std::fs::write(&file, "x = 1\n").unwrap();
        let roots = vec![dir.path().to_path_buf()];
        let modules = vec!["m".to_owned()];
        let key = cache_key("abc", &modules, &roots);
        assert_eq!(key, cache_key("abc", &modules, &roots));
        assert_ne!(key, cache_key("abd", &modules, &roots));
        assert_ne!(key, cache_key("abc", &["n".to_owned()], &roots));
        assert_ne!(key, cache_key("abc", &modules, &[]));
        // Same length, same mtime second: the content still tells.
        let meta = std::fs::metadata(&file).unwrap();
        std::fs::write(&file, "x = 2\n").unwrap();
        let file_handle = std::fs::File::options().write(true).open(&file).unwrap();
        file_handle.set_modified(meta.modified().unwrap()).unwrap();
        assert_ne!(key, cache_key("abc", &modules, &roots));
    }
}
