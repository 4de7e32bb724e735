//! The arena planner: where each tensor of a graph lives while it is alive.
//!
//! A tensor is alive from the node that writes it (inputs: from the start) to the last node
//! that reads it (outputs: to the end). Two tensors alive at the same node need disjoint bytes;
//! an op that can run in place ([`crate::ops::OpKind::in_place`]) writes over its input when no
//! later node reads that input, and the two then share one buffer. Buffers are placed largest
//! first, each at the lowest offset clear of every placed buffer whose lifetime overlaps its own
//! ("greedy by size", as TensorFlow Lite plans its arena). For a chain this is the ping-pong
//! layout of the two largest neighbours, so a generator needs no more than its largest
//! input-plus-output pair.
//!
//! Offsets are per sample: a batch of `B` multiplies every offset and size by `B`, which keeps
//! disjoint buffers disjoint. No heap: the plan is fixed arrays inside [`crate::Model`].

use crate::format::{u16s, FormatError, Model, MAX_ELEMENTS, MAX_TENSORS};
use crate::ops::Op;

/// Each tensor's arena offset per sample, and the bytes per sample of the whole plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    offsets: [u32; MAX_TENSORS],
    bytes: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            offsets: [0; MAX_TENSORS],
            bytes: 0,
        }
    }
}

/// Largest plan, in bytes per sample: every tensor at its largest, side by side.
const MAX_PLAN_BYTES: usize = MAX_ELEMENTS * 8;

impl Plan {
    /// Plans `model`'s tensors (its tables were validated by [`Model::parse`]).
    #[inline(never)]
    pub fn new(model: &Model) -> Result<Plan, FormatError> {
        let count = model.tensor_count().min(MAX_TENSORS);
        // Indices below MAX_TENSORS (a power of two): masking keeps every access in bounds
        // without a check the no-panic proof would have to follow.
        let m = |t: usize| t & (MAX_TENSORS - 1);
        let end = model.node_count() as u16;
        let mut size = [0u32; MAX_TENSORS];
        let mut first = [0u16; MAX_TENSORS];
        let mut last = [0u16; MAX_TENSORS];
        let mut root = [0u8; MAX_TENSORS];
        for t in 0..count {
            size[m(t)] = model.tensor(t).map_or(0, |i| i.bytes()) as u32;
            root[m(t)] = t as u8;
        }
        for (i, (_, inputs, outputs)) in model.links().enumerate() {
            let i = i as u16;
            for t in u16s(inputs).filter(|&t| t < count) {
                last[m(t)] = last[m(t)].max(i);
            }
            for t in u16s(outputs).filter(|&t| t < count) {
                first[m(t)] = i;
                last[m(t)] = i;
            }
        }
        for t in model.outputs().filter(|&t| t < count) {
            last[m(t)] = end;
        }
        // In-place ops take their input's buffer when the input dies at that node. Inputs die
        // in node order, so each buffer's members follow one another in time.
        for (i, (tag, inputs, outputs)) in model.links().enumerate() {
            let x = u16s(inputs).next().unwrap_or(usize::MAX);
            let out = u16s(outputs).next().unwrap_or(usize::MAX);
            if !Op::in_place_tag(tag) || x >= count || out >= count {
                continue;
            }
            let r = root[m(x)] as usize & (MAX_TENSORS - 1);
            if last[m(x)] == i as u16
                && size[m(x)] == size[m(out)]
                && u16s(inputs).filter(|&t| t == x).count() == 1
            {
                root[m(out)] = r as u8;
                last[m(r)] = last[m(r)].max(last[m(out)]);
            }
        }
        // Buffers (roots), largest first; ties by birth, for a deterministic plan.
        let mut order = [0u8; MAX_TENSORS];
        let mut buffers = 0;
        for t in 0..count {
            if root[m(t)] as usize == t && size[m(t)] > 0 {
                if let Some(o) = order.get_mut(buffers) {
                    *o = t as u8;
                    buffers += 1;
                }
            }
        }
        let at = |t: u8| m(t as usize);
        let key = |t: u8| (core::cmp::Reverse(size[at(t)]), first[at(t)], t);
        let order = order.get_mut(..buffers).unwrap_or_default();
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 {
                // Checked accesses: the no-panic proof cannot see that j < len.
                match order.get_mut(j - 1..=j) {
                    Some([a, b]) if key(*b) < key(*a) => core::mem::swap(a, b),
                    _ => break,
                }
                j -= 1;
            }
        }
        let mut offsets = [0u32; MAX_TENSORS];
        let mut bytes = 0usize;
        for (placed, &b) in order.iter().enumerate() {
            let b = at(b);
            let (lo, hi) = (first[m(b)], last[m(b)]);
            let conflicts = || {
                order
                    .get(..placed)
                    .unwrap_or_default()
                    .iter()
                    .map(|&q| at(q))
                    .filter(move |&q| first[m(q)] <= hi && lo <= last[m(q)])
            };
            // The lowest candidate (0, or just above a conflicting buffer) that clears them all.
            let clear = |at: u64| {
                conflicts().all(|q| {
                    let (qa, qb) = (
                        offsets[m(q)] as u64,
                        offsets[m(q)] as u64 + size[m(q)] as u64,
                    );
                    at + size[m(b)] as u64 <= qa || qb <= at
                })
            };
            let at = core::iter::once(0)
                .chain(conflicts().map(|q| offsets[m(q)] as u64 + size[m(q)] as u64))
                .filter(|&at| clear(at))
                .min()
                .unwrap_or(0);
            let top = at + size[m(b)] as u64;
            if top > MAX_PLAN_BYTES as u64 {
                return Err(FormatError::Plan(MAX_PLAN_BYTES));
            }
            offsets[m(b)] = at as u32;
            bytes = bytes.max(top as usize);
        }
        for t in 0..count {
            offsets[m(t)] = offsets[at(root[m(t)])];
        }
        Ok(Plan { offsets, bytes })
    }

    /// Arena offset of tensor `t` for one sample (0 for tensors outside the table).
    pub fn offset(&self, t: usize) -> usize {
        self.offsets.get(t).copied().unwrap_or(0) as usize
    }

    /// Bytes per sample of the tensor region.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
