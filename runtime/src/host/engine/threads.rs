//! A batch split over threads (the std side; the no_std core runs one range of samples on one
//! thread and allocates nothing), and one sample's large layers split by output rows.
//!
//! Every op of a `.pgq` graph works on one sample at a time (batch normalisation is folded,
//! instance normalisation is per sample), so `k` contiguous ranges of the batch run on `k`
//! threads, each with its own arena, write exactly the bytes one thread would: the split is
//! invisible in the results. Each range writes its own disjoint part of the outputs.

use std::ops::Range;

use super::pool::Pool;
use crate::interp::{RunError, RunNode};
use crate::ops::{Cx, Op};

/// Fewest multiply-adds of a layer worth splitting by rows (or a Linear by column blocks):
/// about 1.3 us on one core at AVX-512 VNNI's compute rate, and far longer for a batch-1 Linear,
/// which streams its weights (the default digits model's 401 K multiply-add Linear takes 11 us),
/// against about 1 us to hand a band to the pool's spinning worker ([`super::pool`]).
pub const MIN_SPLIT_MACS: usize = 1 << 18;

/// An int8 engine's name in tables: its kernel family, and its threads when more than one.
pub fn int8_name(isa: crate::kernels::Isa, threads: usize) -> String {
    match threads {
        0 | 1 => format!("int8 {}", isa.name()),
        t => format!("int8 {} x{t} threads", isa.name()),
    }
}

/// Contiguous ranges covering `0..batch`, at most `threads` of them (at least one), sizes
/// differing by at most one sample.
pub fn parts(batch: usize, threads: usize) -> Vec<Range<usize>> {
    let k = threads.clamp(1, batch.max(1));
    let (size, extra) = (batch / k, batch % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = size + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Splits `buf` (`batch` samples of `buf.len() / batch` values) into one mutable slice per
/// range of `ranges`, in order.
pub fn split_samples<'b, T>(
    mut buf: &'b mut [T],
    batch: usize,
    ranges: &[Range<usize>],
) -> Vec<&'b mut [T]> {
    let per = buf.len() / batch.max(1);
    ranges
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(r.len() * per);
            buf = tail;
            head
        })
        .collect()
}

/// Runs one sample's large layers (the ops with rows, [`Op::rows`], and at least
/// [`MIN_SPLIT_MACS`] multiply-adds) split by output rows over up to `threads` threads, each
/// with its own GEMM tiles, and every other op whole. Every output row is computed by the same
/// code from the same inputs as in the whole op, so the bytes are those of one thread.
pub struct RowSplit {
    /// The threads, started once: a layer's bands reach them in under a microsecond.
    pool: Pool,
    min_macs: usize,
    /// The GEMM tiles of the threads beyond the calling one (which uses the arena's).
    tiles: Vec<(Vec<i8>, Vec<i8>)>,
    splits: usize,
}

impl RowSplit {
    pub fn new(threads: usize) -> RowSplit {
        RowSplit {
            pool: Pool::new(threads),
            min_macs: MIN_SPLIT_MACS,
            tiles: Vec::new(),
            splits: 0,
        }
    }

    /// Splits layers from `macs` multiply-adds on (tests split small models' every layer).
    pub fn with_min_macs(mut self, macs: usize) -> RowSplit {
        self.min_macs = macs;
        self
    }

    /// The engine's threads, for work split other ways (a batch by samples).
    pub fn pool(&mut self) -> &mut Pool {
        &mut self.pool
    }

    /// How many layers were split so far.
    pub fn splits(&self) -> usize {
        self.splits
    }
}

impl RunNode for RowSplit {
    fn run_node(
        &mut self,
        op: &Op,
        cx: &mut Cx,
        x: &[&[i8]],
        y: &mut [i8],
    ) -> Result<(), RunError> {
        let rows = op.rows(cx.isa);
        let threads = self.pool.threads();
        if cx.batch != 1 || threads < 2 || rows < 2 || op.macs() < self.min_macs {
            return op.run(cx, x, y);
        }
        self.splits += 1;
        let ranges = parts(rows, threads);
        let bands = split_samples(y, rows, &ranges);
        let (tile_len, out_len) = (cx.tile.len(), cx.tile_out.len());
        self.tiles
            .resize_with(ranges.len() - 1, || (vec![0; tile_len], vec![0; out_len]));
        let (isa, indices) = (cx.isa, cx.indices);
        let tiles = std::iter::once((&mut *cx.tile, &mut *cx.tile_out)).chain(
            self.tiles
                .iter_mut()
                .map(|(t, o)| (t.as_mut_slice(), o.as_mut_slice())),
        );
        let jobs: Vec<_> = ranges.into_iter().zip(bands).zip(tiles).collect();
        self.pool
            .for_each_job(jobs, |((r, band), (tile, tile_out))| {
                let mut cx = Cx {
                    isa,
                    batch: 1,
                    tile,
                    tile_out,
                    indices,
                };
                op.run_rows(&mut cx, x, band, r)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_batch_evenly() {
        for batch in 1..40 {
            for threads in 0..9 {
                let p = parts(batch, threads);
                assert_eq!(p.len(), threads.clamp(1, batch));
                assert_eq!(p[0].start, 0);
                assert_eq!(p.last().unwrap().end, batch);
                assert!(p.windows(2).all(|w| w[0].end == w[1].start));
                let (lo, hi) = (
                    p.iter().map(|r| r.len()).min().unwrap(),
                    p.iter().map(|r| r.len()).max().unwrap(),
                );
                assert!(hi - lo <= 1 && lo >= 1, "{batch} on {threads}: {p:?}");
            }
        }
    }

    #[test]
    fn samples_split_where_the_ranges_do() {
        let mut buf: Vec<u32> = (0..10 * 3).collect();
        let ranges = parts(10, 3);
        let chunks = split_samples(&mut buf, 10, &ranges);
        let lens: Vec<_> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(lens, [12, 9, 9]);
        assert_eq!(chunks[1][0], 12);
    }
}
