//! Fast CPU operators plugged into Burn's flex backend, each concept in its own file. They take
//! Burn's own modules, so models, checkpoints and export do not change.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod activation;
pub mod conv;
pub mod kernels;
pub mod norm;
pub mod pixel_norm;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns these operators on or off for the whole process (off: Burn's own), so that `bench` can
/// time both in one run.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The values of a contiguous f32 flex tensor. Only f32 tensors reach these operators (any other
/// dtype takes Burn's own op) and they are made contiguous first, so the `expect` states this
/// module's invariant; no user input reaches it.
fn slice(t: &burn::backend::flex::FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// Asks glibc's allocator to keep freed multi-megabyte blocks for reuse instead of unmapping them.
/// Training frees and re-allocates the same activation-sized tensors every iteration; by default
/// each comes back as fresh pages from the OS, faulted in and zeroed one 4 KiB page at a time,
/// which cost several percent of the iteration. Process-wide; call once at start-up.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets allocator tunables (documented as safe to call at any time);
        // a failure (0) leaves the defaults, which are correct, only slower.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 256 << 20);
            mallopt(M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// A vector of `len` values that `fill` writes, without first zeroing them: a fresh output the
/// size of a column matrix costs a memset of several megabytes, a sixth of the time to fill it, and
/// `vec![0.0; len]` runs it on the calling thread, serially.
///
/// # Safety
/// `fill` must write every element of the slice it is given.
unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: capacity >= len, and the caller guarantees `fill` initialised the first len.
    unsafe { v.set_len(len) };
    v
}

/// A new vector of `len` values built `chunk` at a time in parallel by `fill(chunk_index, chunk)`,
/// which receives its chunk zeroed: each task zeroes its own chunk just before filling it (in
/// cache, in parallel), so `fill` need not write every element.
fn par_new(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let zero_then_fill = |slots: &mut [MaybeUninit<f32>]| {
        slots
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, part)| {
                part.fill(MaybeUninit::new(0.0));
                // SAFETY: every element of `part` was initialised just above, and
                // `MaybeUninit<f32>` has the layout of `f32`.
                let part = unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) };
                fill(i, part);
            });
    };
    // SAFETY: the chunks cover the slice and each is initialised in full before `fill` runs.
    unsafe { written(len, zero_then_fill) }
}
