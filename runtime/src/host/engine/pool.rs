//! A persistent pool of worker threads for the int8 engines, built for latency: a batch of one
//! hands each of its large layers to the pool, a few hundred microseconds apart.
//!
//! Why not scoped threads or rayon: on this project's VMs a thread costs about 67 us to spawn and
//! join, and waking a sleeping worker (a futex, through the hypervisor) 20-40 us, while half of
//! a 64 px generator's split layer saves 80-170 us. Here a worker that finished a task keeps
//! spinning on an atomic for [`SPIN`] before it parks, so the next layer reaches it in well under
//! a microsecond (measured: 0.4 us a round trip against 67 us for `std::thread::scope` and
//! 23-42 us for a rayon scope after a pause). The cost: a core busy for at most [`SPIN`] after
//! the last task.
//!
//! Tasks borrow the caller's data: [`Pool::run`] does not return before every worker is done
//! with the task (even when one of them panics), which is what makes lending it sound.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
pub const SPIN: Duration = Duration::from_millis(2);

/// A task: `jobs` calls of a closure by index, lent to the workers for one [`Pool::run`].
#[derive(Clone, Copy)]
struct Task {
    f: *const (dyn Fn(usize) + Sync + 'static),
    jobs: usize,
}

// SAFETY: the closure is `Sync`, and `Pool::run` keeps it alive until every worker is done.
unsafe impl Send for Task {}

struct Shared {
    /// Bumped once per task; a worker runs a task when it sees a new value.
    epoch: AtomicUsize,
    task: Mutex<Option<Task>>,
    /// Workers done with the current task.
    done: AtomicUsize,
    /// Per worker: parked, or about to park (then the poster unparks it).
    parked: Vec<AtomicBool>,
    stop: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// `threads - 1` workers; the calling thread is the first participant of every task.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool in which [`Pool::run`] uses up to `threads` threads (the caller's and
    /// `threads - 1` workers). With one thread, tasks run inline and no thread is started.
    pub fn new(threads: usize) -> Pool {
        let n = threads.max(1) - 1;
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            task: Mutex::new(None),
            done: AtomicUsize::new(0),
            parked: (0..n).map(|_| AtomicBool::new(false)).collect(),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let mut pool = Pool {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(n),
        };
        for w in 0..n {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("pocketgan-int8-{}", w + 1))
                .spawn(move || work(&shared, w));
            match spawned {
                Ok(handle) => pool.workers.push(handle),
                // Without its threads the pool still runs every task, on the caller (the
                // workers already started stop when `pool` drops).
                Err(_) => return Pool::new(1),
            }
        }
        pool
    }

    /// Threads a task runs on, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(j)` for every `j` in `0..jobs`, participant `p` of [`Pool::threads`] taking
    /// the jobs `p, p + threads, ...` (the caller is participant 0), and returns when all are
    /// done. A panic in any job is passed on once every participant has finished.
    /// `&mut self`: one task at a time (a second caller could otherwise swap the task under
    /// the workers of the first).
    pub fn run(&mut self, jobs: usize, f: &(dyn Fn(usize) + Sync)) {
        let stride = self.threads();
        if stride == 1 || jobs <= 1 {
            (0..jobs).for_each(f);
            return;
        }
        let sh = &*self.shared;
        // SAFETY: only the lifetime is erased; this function does not return (nor unwind)
        // before `done` says every worker has finished with the task.
        let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe { core::mem::transmute(f) };
        *sh.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(Task { f: erased, jobs });
        sh.done.store(0, SeqCst);
        sh.epoch.fetch_add(1, SeqCst);
        self.unpark_parked();
        let own = catch_unwind(AssertUnwindSafe(|| (0..jobs).step_by(stride).for_each(f)));
        while sh.done.load(SeqCst) < self.workers.len() {
            std::hint::spin_loop();
        }
        *sh.task.lock().unwrap_or_else(PoisonError::into_inner) = None;
        if let Err(p) = own {
            resume_unwind(p);
        }
        if let Some(p) = sh
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            resume_unwind(p);
        }
    }

    /// Runs `run(job)` for every job, spread over the pool, and returns the first error in
    /// job order.
    pub fn for_each_job<J: Send, E: Send>(
        &mut self,
        jobs: Vec<J>,
        run: impl Fn(J) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        let n = jobs.len();
        let jobs: Vec<Mutex<Option<J>>> = jobs.into_iter().map(|j| Mutex::new(Some(j))).collect();
        let results: Vec<Mutex<Option<Result<(), E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
        self.run(n, &|i| {
            let job = jobs[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(job) = job {
                *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(run(job));
            }
        });
        results
            .into_iter()
            .filter_map(|r| r.into_inner().unwrap_or_else(PoisonError::into_inner))
            .find(Result::is_err)
            .unwrap_or(Ok(()))
    }

    /// Wakes the workers that parked (the others are spinning and see the new epoch).
    fn unpark_parked(&self) {
        for (w, parked) in self.workers.iter().zip(&self.shared.parked) {
            if parked.load(SeqCst) {
                w.thread().unpark();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Worker `w` (participant `w + 1`): waits for each new task, runs its share, reports done.
fn work(sh: &Shared, w: usize) {
    let (me, stride) = (w + 1, sh.parked.len() + 1);
    let mut seen = 0;
    loop {
        let mut since = Instant::now();
        let mut spins = 0u32;
        seen = loop {
            let e = sh.epoch.load(SeqCst);
            if e != seen {
                break e;
            }
            if sh.stop.load(SeqCst) {
                return;
            }
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 && since.elapsed() > SPIN {
                // Announce the park, then look once more: a poster that bumped the epoch
                // before seeing `parked` was seen here; one that bumps it after unparks us
                // (an unpark before `park` makes `park` return at once).
                sh.parked[w].store(true, SeqCst);
                if sh.epoch.load(SeqCst) == seen && !sh.stop.load(SeqCst) {
                    std::thread::park();
                }
                sh.parked[w].store(false, SeqCst);
                since = Instant::now();
            } else {
                std::hint::spin_loop();
            }
        };
        let task = *sh.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Task { f, jobs }) = task {
            // SAFETY: the poster keeps `f` alive until `done` counts this worker.
            let f = unsafe { &*f };
            if let Err(p) =
                catch_unwind(AssertUnwindSafe(|| (me..jobs).step_by(stride).for_each(f)))
            {
                *sh.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(p);
            }
        }
        sh.done.fetch_add(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once_on_any_pool_size() {
        for threads in 1..5 {
            let mut pool = Pool::new(threads);
            for jobs in 0..11 {
                let hits: Vec<AtomicUsize> = (0..jobs).map(|_| AtomicUsize::new(0)).collect();
                pool.run(jobs, &|j| {
                    hits[j].fetch_add(1, SeqCst);
                });
                assert!(
                    hits.iter().all(|h| h.load(SeqCst) == 1),
                    "{threads} threads, {jobs} jobs"
                );
            }
        }
    }

    #[test]
    fn tasks_after_a_park_still_run() {
        let mut pool = Pool::new(2);
        let count = AtomicUsize::new(0);
        for round in 0..3 {
            pool.run(2, &|_| {
                count.fetch_add(1, SeqCst);
            });
            assert_eq!(count.load(SeqCst), 2 * (round + 1));
            // Long enough for the worker to park.
            std::thread::sleep(SPIN * 3);
        }
    }

    #[test]
    fn jobs_run_on_other_threads() {
        let mut pool = Pool::new(2);
        let ids = Mutex::new(Vec::new());
        pool.run(2, &|_| {
            ids.lock().unwrap().push(std::thread::current().id())
        });
        let ids = ids.into_inner().unwrap();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn the_first_error_in_job_order_wins() {
        let mut pool = Pool::new(3);
        let r: Result<(), usize> =
            pool.for_each_job(vec![0, 1, 2, 3], |j| if j >= 2 { Err(j) } else { Ok(()) });
        assert_eq!(r, Err(2));
    }

    #[test]
    fn a_worker_panic_reaches_the_caller_and_the_pool_goes_on() {
        let mut pool = Pool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, &|j| assert!(j != 1, "job one fails"));
        }));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(4, &|_| {
            count.fetch_add(1, SeqCst);
        });
        assert_eq!(count.load(SeqCst), 4);
    }
}
