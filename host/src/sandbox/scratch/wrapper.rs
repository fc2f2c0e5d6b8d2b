//! `wasi:filesystem` as wasmtime-wasi implements it, with the scratch
//! directory's limit and `/dev/null` added.
//!
//! Every call is forwarded to wasmtime-wasi's own implementation (for
//! [`WasiFilesystemCtxView`]); only descriptors inside the scratch directory
//! or `/dev` are looked at. They are known by their resource reps: the
//! preopens, and whatever `open-at` opened from a known directory; a rep is
//! forgotten when its descriptor is dropped (the table reuses reps).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::FilePerms;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self, Advice, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry,
    DirectoryEntryStream, Filesize, Host, HostDescriptor, HostDirectoryEntryStream,
    MetadataHashValue, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::sync::io::streams;
use wasmtime_wasi::p2::{DynOutputStream, FsError, FsResult};

use super::stream::{Position, QuotaStream};
use super::{DEV_GUEST, ENTRY_COST, Quota, TMP_GUEST};

/// [`HasData`] of the wrapped filesystem interfaces.
pub(in crate::sandbox) struct ScratchFs;

impl HasData for ScratchFs {
    type Data<'a> = ScratchView<'a>;
}

/// The wrapped filesystem host of one call: wasmtime-wasi's, and ours.
pub(in crate::sandbox) struct ScratchView<'a> {
    pub(in crate::sandbox) fs: WasiFilesystemCtxView<'a>,
    pub(in crate::sandbox) state: &'a mut ScratchState,
}

/// Where a known descriptor is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// Inside the scratch directory: growth is limited.
    Tmp,
    /// Inside `/dev`: its one file is `null`, whose writes are discarded.
    Dev,
}

/// What the quota and the streams share.
pub(super) struct Shared {
    quota: Quota,
    /// The scratch directory on the host, measured when space was freed.
    tmp: PathBuf,
    /// The files the guest has open inside it, by descriptor: a file
    /// unlinked while open keeps its space until its last descriptor
    /// closes, so the measurement counts those too.
    open: HashMap<u32, Arc<cap_std::fs::File>>,
}

impl Shared {
    /// Poisoning cannot leave the quota inconsistent (it is two integers),
    /// so a poisoned lock is used as it is.
    pub(super) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
        shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn reserve(&mut self, growth: u64) -> bool {
        let (tmp, open) = (&self.tmp, &self.open);
        self.quota
            .reserve(growth, || super::measure(tmp, open.values().map(|f| &**f)))
    }
}

/// The session's part of the wrapper: the quota and the known descriptors.
pub(in crate::sandbox) struct ScratchState {
    shared: Arc<Mutex<Shared>>,
    known: HashMap<u32, Place>,
    /// The preopens this wrapper serves (a `--dir` mount at the same guest
    /// path takes its place).
    preopens: Vec<(&'static str, Place)>,
}

impl ScratchState {
    /// The state of a session whose scratch directory is `tmp` (on the host),
    /// limited to `limit` bytes; `with_tmp` and `with_dev` say whether the
    /// preopens `/tmp` and `/dev` are the scratch ones.
    pub(in crate::sandbox) fn new(
        tmp: PathBuf,
        limit: u64,
        with_tmp: bool,
        with_dev: bool,
    ) -> ScratchState {
        let mut preopens = Vec::new();
        if with_tmp {
            preopens.push((TMP_GUEST, Place::Tmp));
        }
        if with_dev {
            preopens.push((DEV_GUEST, Place::Dev));
        }
        ScratchState {
            shared: Arc::new(Mutex::new(Shared {
                quota: Quota::new(limit),
                tmp,
                open: HashMap::new(),
            })),
            known: HashMap::new(),
            preopens,
        }
    }
}

/// The error a write past the limit gives: `ENOSPC` in the guest.
pub(super) fn no_space() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOSPC)
}

fn full() -> FsError {
    ErrorCode::InsufficientSpace.into()
}

/// A second handle to the same descriptor, for a forwarded call.
fn again<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

impl ScratchView<'_> {
    fn place(&self, fd: &Resource<Descriptor>) -> Option<Place> {
        self.state.known.get(&fd.rep()).copied()
    }

    fn reserve(&mut self, growth: u64) -> FsResult<()> {
        if Shared::lock(&self.state.shared).reserve(growth) {
            Ok(())
        } else {
            Err(full())
        }
    }

    fn refund(&mut self, amount: u64) {
        Shared::lock(&self.state.shared).quota.refund(amount);
    }

    fn note_freed(&mut self) {
        Shared::lock(&self.state.shared).quota.note_freed();
    }

    /// Runs `op` having reserved `cost` for it; gives it back if `op` fails.
    fn with_reserved<R>(
        &mut self,
        cost: u64,
        op: impl FnOnce(&mut Self) -> FsResult<R>,
    ) -> FsResult<R> {
        self.reserve(cost)?;
        let result = op(self);
        if result.is_err() {
            self.refund(cost);
        }
        result
    }

    /// The file behind `fd`, if it is one.
    fn file(
        &self,
        fd: &Resource<Descriptor>,
    ) -> FsResult<Option<&wasmtime_wasi::filesystem::File>> {
        match self.fs.table.get(fd)? {
            Descriptor::File(file) => Ok(Some(file)),
            Descriptor::Dir(_) => Ok(None),
        }
    }

    /// The current size of the file behind `fd`.
    fn file_size(&self, fd: &Resource<Descriptor>) -> FsResult<Option<u64>> {
        match self.file(fd)? {
            Some(file) => Ok(Some(file.file.metadata().map_err(ErrorCode::from)?.len())),
            None => Ok(None),
        }
    }

    /// A stream for a write to the file behind `fd`, limited or discarding.
    fn output_stream(
        &mut self,
        fd: &Resource<Descriptor>,
        place: Place,
        position: Position,
    ) -> FsResult<Resource<DynOutputStream>> {
        let Some(file) = self.file(fd)? else {
            return Err(ErrorCode::BadDescriptor.into());
        };
        let stream: DynOutputStream = match place {
            Place::Dev => Box::new(wasmtime_wasi::p2::pipe::SinkOutputStream),
            Place::Tmp => {
                if !file.perms.contains(FilePerms::WRITE) {
                    return Err(ErrorCode::BadDescriptor.into());
                }
                let file = file.file.clone();
                Box::new(QuotaStream::new(file, position, self.state.shared.clone()))
            }
        };
        Ok(self.fs.table.push(stream)?)
    }

    /// The entry cost of a new name in a scratch directory.
    fn new_entry_cost(&mut self, fd: &Resource<Descriptor>) -> u64 {
        if self.place(fd) == Some(Place::Tmp) {
            ENTRY_COST
        } else {
            0
        }
    }
}

impl Host for ScratchView<'_> {
    fn convert_error_code(&mut self, err: FsError) -> wasmtime::Result<types::ErrorCode> {
        Host::convert_error_code(&mut self.fs, err)
    }

    fn filesystem_error_code(
        &mut self,
        err: Resource<streams::Error>,
    ) -> wasmtime::Result<Option<types::ErrorCode>> {
        Host::filesystem_error_code(&mut self.fs, err)
    }
}

impl preopens::Host for ScratchView<'_> {
    fn get_directories(&mut self) -> wasmtime::Result<Vec<(Resource<Descriptor>, String)>> {
        let directories = preopens::Host::get_directories(&mut self.fs)?;
        for (fd, name) in &directories {
            if let Some((_, place)) = self.state.preopens.iter().find(|(path, _)| path == name) {
                self.state.known.insert(fd.rep(), *place);
            }
        }
        Ok(directories)
    }
}

impl HostDescriptor for ScratchView<'_> {
    fn advise(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
        len: Filesize,
        advice: Advice,
    ) -> FsResult<()> {
        HostDescriptor::advise(&mut self.fs, fd, offset, len, advice)
    }

    fn sync_data(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync_data(&mut self.fs, fd)
    }

    fn get_flags(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorFlags> {
        HostDescriptor::get_flags(&mut self.fs, fd)
    }

    fn get_type(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorType> {
        HostDescriptor::get_type(&mut self.fs, fd)
    }

    fn set_size(&mut self, fd: Resource<Descriptor>, size: Filesize) -> FsResult<()> {
        match self.place(&fd) {
            None => HostDescriptor::set_size(&mut self.fs, fd, size),
            // Truncating /dev/null does nothing.
            Some(Place::Dev) if self.file(&fd)?.is_some() => Ok(()),
            Some(Place::Dev) => HostDescriptor::set_size(&mut self.fs, fd, size),
            Some(Place::Tmp) => {
                let Some(current) = self.file_size(&fd)? else {
                    return HostDescriptor::set_size(&mut self.fs, fd, size);
                };
                if size < current {
                    self.note_freed();
                }
                let growth = size.saturating_sub(current);
                self.with_reserved(growth, |view| {
                    HostDescriptor::set_size(&mut view.fs, fd, size)
                })
            }
        }
    }

    fn set_times(
        &mut self,
        fd: Resource<Descriptor>,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times(&mut self.fs, fd, atim, mtim)
    }

    fn read(
        &mut self,
        fd: Resource<Descriptor>,
        len: Filesize,
        offset: Filesize,
    ) -> FsResult<(Vec<u8>, bool)> {
        HostDescriptor::read(&mut self.fs, fd, len, offset)
    }

    fn write(
        &mut self,
        fd: Resource<Descriptor>,
        buf: Vec<u8>,
        offset: Filesize,
    ) -> FsResult<Filesize> {
        match self.place(&fd) {
            None => HostDescriptor::write(&mut self.fs, fd, buf, offset),
            Some(Place::Dev) if self.file(&fd)?.is_some() => Ok(buf.len() as Filesize),
            Some(Place::Dev) => HostDescriptor::write(&mut self.fs, fd, buf, offset),
            Some(Place::Tmp) => {
                let Some(size) = self.file_size(&fd)? else {
                    return HostDescriptor::write(&mut self.fs, fd, buf, offset);
                };
                let growth = super::growth(size, offset, buf.len() as u64).ok_or_else(full)?;
                self.with_reserved(growth, |view| {
                    HostDescriptor::write(&mut view.fs, fd, buf, offset)
                })
            }
        }
    }

    fn read_directory(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<DirectoryEntryStream>> {
        HostDescriptor::read_directory(&mut self.fs, fd)
    }

    fn sync(&mut self, fd: Resource<Descriptor>) -> FsResult<()> {
        HostDescriptor::sync(&mut self.fs, fd)
    }

    fn create_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let cost = self.new_entry_cost(&fd);
        self.with_reserved(cost, |view| {
            HostDescriptor::create_directory_at(&mut view.fs, fd, path)
        })
    }

    fn stat(&mut self, fd: Resource<Descriptor>) -> FsResult<DescriptorStat> {
        HostDescriptor::stat(&mut self.fs, fd)
    }

    fn stat_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<DescriptorStat> {
        HostDescriptor::stat_at(&mut self.fs, fd, path_flags, path)
    }

    fn set_times_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        atim: NewTimestamp,
        mtim: NewTimestamp,
    ) -> FsResult<()> {
        HostDescriptor::set_times_at(&mut self.fs, fd, path_flags, path, atim, mtim)
    }

    fn link_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path_flags: PathFlags,
        old_path: String,
        new_descriptor: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        // The scratch directory is its own filesystem: a link into or out
        // of it would share a file the limit does not see.
        if self.place(&fd) != self.place(&new_descriptor) {
            return Err(ErrorCode::CrossDevice.into());
        }
        let cost = self.new_entry_cost(&fd);
        self.with_reserved(cost, |view| {
            HostDescriptor::link_at(
                &mut view.fs,
                fd,
                old_path_flags,
                old_path,
                new_descriptor,
                new_path,
            )
        })
    }

    fn open_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
        mut oflags: OpenFlags,
        mut flags: DescriptorFlags,
    ) -> FsResult<Resource<Descriptor>> {
        let place = self.place(&fd);
        let opened = match place {
            None => HostDescriptor::open_at(&mut self.fs, fd, path_flags, path, oflags, flags)?,
            Some(Place::Dev) => {
                // `/dev` holds only `null`: opened for writing, it is opened
                // for reading, and the wrapper discards what is written.
                if flags.contains(DescriptorFlags::WRITE) {
                    flags = (flags & !DescriptorFlags::WRITE) | DescriptorFlags::READ;
                }
                oflags &= !(OpenFlags::CREATE | OpenFlags::TRUNCATE);
                HostDescriptor::open_at(&mut self.fs, fd, path_flags, path, oflags, flags)?
            }
            Some(Place::Tmp) => {
                let creates = oflags.contains(OpenFlags::CREATE)
                    && HostDescriptor::stat_at(
                        &mut self.fs,
                        again(&fd),
                        PathFlags::empty(),
                        path.clone(),
                    )
                    .is_err();
                let cost = if creates { ENTRY_COST } else { 0 };
                let opened = self.with_reserved(cost, |view| {
                    HostDescriptor::open_at(&mut view.fs, fd, path_flags, path, oflags, flags)
                })?;
                if oflags.contains(OpenFlags::TRUNCATE) {
                    self.note_freed();
                }
                opened
            }
        };
        if let Some(place) = place {
            self.state.known.insert(opened.rep(), place);
        }
        if place == Some(Place::Tmp)
            && let Ok(Some(file)) = self.file(&opened)
        {
            let file = file.file.clone();
            Shared::lock(&self.state.shared)
                .open
                .insert(opened.rep(), file);
        }
        Ok(opened)
    }

    fn drop(&mut self, fd: Resource<Descriptor>) -> wasmtime::Result<()> {
        self.state.known.remove(&fd.rep());
        let closed = Shared::lock(&self.state.shared).open.remove(&fd.rep());
        if closed.is_some_and(|file| super::unlinked(&file)) {
            // The last descriptor of an unlinked file frees its space; any
            // other close frees nothing, and must not cost a measurement.
            self.note_freed();
        }
        HostDescriptor::drop(&mut self.fs, fd)
    }

    fn readlink_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<String> {
        HostDescriptor::readlink_at(&mut self.fs, fd, path)
    }

    fn remove_directory_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let tmp = self.place(&fd) == Some(Place::Tmp);
        HostDescriptor::remove_directory_at(&mut self.fs, fd, path)?;
        if tmp {
            self.note_freed();
        }
        Ok(())
    }

    fn rename_at(
        &mut self,
        fd: Resource<Descriptor>,
        old_path: String,
        new_fd: Resource<Descriptor>,
        new_path: String,
    ) -> FsResult<()> {
        // Moving a file into the scratch directory would grow it unseen;
        // moving one out, take its contents elsewhere. Python's
        // `shutil.move` copies on EXDEV.
        let place = self.place(&fd);
        if place != self.place(&new_fd) {
            return Err(ErrorCode::CrossDevice.into());
        }
        HostDescriptor::rename_at(&mut self.fs, fd, old_path, new_fd, new_path)?;
        if place == Some(Place::Tmp) {
            // A rename over an existing entry frees it.
            self.note_freed();
        }
        Ok(())
    }

    fn symlink_at(
        &mut self,
        fd: Resource<Descriptor>,
        src_path: String,
        dest_path: String,
    ) -> FsResult<()> {
        let cost = self.new_entry_cost(&fd);
        self.with_reserved(cost, |view| {
            HostDescriptor::symlink_at(&mut view.fs, fd, src_path, dest_path)
        })
    }

    fn unlink_file_at(&mut self, fd: Resource<Descriptor>, path: String) -> FsResult<()> {
        let tmp = self.place(&fd) == Some(Place::Tmp);
        HostDescriptor::unlink_file_at(&mut self.fs, fd, path)?;
        if tmp {
            self.note_freed();
        }
        Ok(())
    }

    fn read_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<streams::InputStream>> {
        HostDescriptor::read_via_stream(&mut self.fs, fd, offset)
    }

    fn write_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
        offset: Filesize,
    ) -> FsResult<Resource<streams::OutputStream>> {
        match self.place(&fd) {
            None => HostDescriptor::write_via_stream(&mut self.fs, fd, offset),
            Some(place) => self.output_stream(&fd, place, Position::At(offset)),
        }
    }

    fn append_via_stream(
        &mut self,
        fd: Resource<Descriptor>,
    ) -> FsResult<Resource<streams::OutputStream>> {
        match self.place(&fd) {
            None => HostDescriptor::append_via_stream(&mut self.fs, fd),
            Some(place) => self.output_stream(&fd, place, Position::Append),
        }
    }

    fn is_same_object(
        &mut self,
        a: Resource<Descriptor>,
        b: Resource<Descriptor>,
    ) -> wasmtime::Result<bool> {
        HostDescriptor::is_same_object(&mut self.fs, a, b)
    }

    fn metadata_hash(&mut self, fd: Resource<Descriptor>) -> FsResult<MetadataHashValue> {
        HostDescriptor::metadata_hash(&mut self.fs, fd)
    }

    fn metadata_hash_at(
        &mut self,
        fd: Resource<Descriptor>,
        path_flags: PathFlags,
        path: String,
    ) -> FsResult<MetadataHashValue> {
        HostDescriptor::metadata_hash_at(&mut self.fs, fd, path_flags, path)
    }
}

impl HostDirectoryEntryStream for ScratchView<'_> {
    fn read_directory_entry(
        &mut self,
        stream: Resource<DirectoryEntryStream>,
    ) -> FsResult<Option<DirectoryEntry>> {
        HostDirectoryEntryStream::read_directory_entry(&mut self.fs, stream)
    }

    fn drop(&mut self, stream: Resource<DirectoryEntryStream>) -> wasmtime::Result<()> {
        HostDirectoryEntryStream::drop(&mut self.fs, stream)
    }
}
