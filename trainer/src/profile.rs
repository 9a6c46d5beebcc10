//! `revgen train --profile-steps N`: PyTorch's profiler (Kineto) over N training steps, written as the Chrome
//! trace that `torch.profiler` exports: every LibTorch operator on the host with its input shapes and, on CUDA,
//! every kernel and copy on the device, linked to the operator that launched it. The steps, and their forward,
//! backward and optimizer phases, are named spans (`ProfilerStep#N`, as torch.profiler names them), so a revgen
//! step and a PyTorch one (`TRACE_OUT=DIR scripts/bench/train_pytorch.py`) can be compared operator by operator
//! (`scripts/trace_summary.py`) or read in https://ui.perfetto.dev, chrome://tracing or TensorBoard.
//!
//! LibTorch only: the pure-Rust backend's operations are not LibTorch's, and nothing records them.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where the trace of steps `first..=last` goes in a run directory.
pub fn trace_path(run: &Path, first: u64, last: u64) -> PathBuf {
    run.join("profile").join(format!("steps-{first}-{last}.pt.trace.json"))
}

/// The profiler while it records; dropping it without [`Profiler::save`] stops it and discards the trace.
pub struct Profiler {
    recording: bool,
}

impl Profiler {
    /// Starts recording the operators that this thread runs on LibTorch, and with `cuda` the device's kernels.
    pub fn start(cuda: bool) -> Result<Self> {
        ffi::start(cuda)?;
        Ok(Profiler { recording: true })
    }

    /// Stops recording and writes the trace to `path` (atomically: under a temporary name first).
    pub fn save(mut self, path: &Path) -> Result<()> {
        self.recording = false;
        let dir = path.parent().expect("a trace path has a directory");
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let partial = path.with_extension("partial");
        ffi::stop(Some(&partial))?;
        std::fs::rename(&partial, path).map_err(Error::io(path))
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if self.recording {
            // Leaving it on would slow every later operator; an error while discarding has nothing to report to.
            let _ = ffi::stop(None);
        }
    }
}

/// A named span in the trace while it lives; nothing when no profiler records.
#[must_use = "the span ends when this is dropped"]
pub struct Scope {
    _span: ffi::Span,
}

pub fn scope(name: &str) -> Scope {
    Scope { _span: ffi::Span::begin(name) }
}

#[cfg(feature = "tch")]
mod ffi {
    use std::ffi::{CString, c_char, c_void};
    use std::path::Path;

    use crate::libtorch::take_error;
    use crate::{Error, Result};

    // csrc/profiler.cpp, compiled by build.rs.
    unsafe extern "C" {
        fn revgen_profiler_start(cuda: bool, error: *mut *mut c_char);
        fn revgen_profiler_stop(path: *const c_char, error: *mut *mut c_char);
        fn revgen_scope_begin(name: *const c_char) -> *mut c_void;
        fn revgen_scope_end(scope: *mut c_void);
    }

    pub fn start(cuda: bool) -> Result<()> {
        let mut error = std::ptr::null_mut();
        // SAFETY: `error` is a valid out-pointer.
        unsafe { revgen_profiler_start(cuda, &mut error) };
        take_error(error).map_or(Ok(()), |reason| Err(Error::Profiler(reason)))
    }

    /// Stops the profiler and writes its trace to `path`, or discards it.
    pub fn stop(path: Option<&Path>) -> Result<()> {
        let path = path.map(|p| CString::new(p.as_os_str().as_encoded_bytes()).expect("paths have no NUL"));
        let mut error = std::ptr::null_mut();
        // SAFETY: the path is NUL-terminated (or null: the trace is discarded) and `error` a valid out-pointer.
        unsafe { revgen_profiler_stop(path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr()), &mut error) };
        take_error(error).map_or(Ok(()), |reason| Err(Error::Profiler(reason)))
    }

    /// LibTorch's `RecordFunction` for a user span, or null when nothing records.
    pub struct Span(*mut c_void);

    impl Span {
        pub fn begin(name: &str) -> Self {
            let name = CString::new(name).expect("span names have no NUL");
            // SAFETY: the name is NUL-terminated; LibTorch copies it.
            Span(unsafe { revgen_scope_begin(name.as_ptr()) })
        }
    }

    impl Drop for Span {
        fn drop(&mut self) {
            // SAFETY: a pointer from revgen_scope_begin, ended once; null is ignored.
            unsafe { revgen_scope_end(self.0) }
        }
    }
}

#[cfg(not(feature = "tch"))]
mod ffi {
    use std::path::Path;

    use crate::{Error, Result};

    pub fn start(_cuda: bool) -> Result<()> {
        Err(Error::BackendNotBuilt("tch"))
    }

    pub fn stop(_path: Option<&Path>) -> Result<()> {
        Ok(())
    }

    pub struct Span;

    impl Span {
        pub fn begin(_name: &str) -> Self {
            Span
        }
    }
}
