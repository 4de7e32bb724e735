//! Fast CPU operators plugged into Burn's flex backend, each concept in its own file. They take
//! Burn's own modules, so models, checkpoints and export do not change.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod activation;
pub mod conv;
pub mod kernels;
pub mod norm;

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

/// A new vector of `len` values built `chunk` at a time in parallel by `fill(chunk_index, chunk)`,
/// which receives the chunk zeroed. Each task zeroes its own chunk just before filling it: `vec![0.0;
/// len]` would zero the whole buffer on the calling thread first, a serial pass over memory that
/// cost more than the parallel work on a multi-megabyte activation.
fn par_new(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, part)| {
            for e in part.iter_mut() {
                e.write(0.0);
            }
            // SAFETY: every element of `part` was initialised just above, and `MaybeUninit<f32>`
            // has the layout of `f32`.
            let part = unsafe { &mut *(part as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            fill(i, part);
        });
    // SAFETY: the chunks cover `0..len` and each element was initialised above (a panic in `fill`
    // propagates before this line, leaving the length 0).
    unsafe { v.set_len(len) };
    v
}
