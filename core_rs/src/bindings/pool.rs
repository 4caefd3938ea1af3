//! Long-lived engine threads with large stacks.
//!
//! IronCalc's parser and evaluator recurse, and a stack overflow aborts the
//! process, so the engine runs on threads with a large stack. Starting such a
//! thread per call cost more than grading a formula, so a few are started once
//! and fed jobs. A caller blocks until its job has finished, which is what
//! lets a job borrow the caller's data.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    queue: Mutex<Sender<Job>>,
}

fn worker(jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        // The lock is held only while waiting for the next job.
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the pool is gone
        }
    }
}

fn pool(stack_bytes: usize) -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let workers = thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 16);
        let mut started = 0;
        for i in 0..workers {
            let rx = Arc::clone(&rx);
            let spawned = thread::Builder::new()
                .name(format!("core_rs-engine-{i}"))
                .stack_size(stack_bytes)
                .spawn(move || worker(rx));
            started += usize::from(spawned.is_ok());
        }
        (started > 0).then(|| Pool {
            queue: Mutex::new(tx),
        })
    })
    .as_ref()
}

/// Runs `work` on an engine thread and waits for it. `None` when no engine
/// thread could be started or the job could not be queued (the caller then
/// runs it some other way). A panic in `work` is returned as `Err(payload)`.
pub fn run<T, F>(stack_bytes: usize, work: F) -> Option<thread::Result<T>>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let pool = pool(stack_bytes)?;
    let (done_tx, done_rx) = mpsc::sync_channel::<thread::Result<T>>(1);
    let job = move || {
        let _ = done_tx.send(catch_unwind(AssertUnwindSafe(work)));
    };
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
    // SAFETY: the job borrows from this stack frame, and this function does
    // not return before the job has been run and dropped or dropped unrun:
    // `recv` below returns only once the job has sent its result (its last
    // use of anything borrowed) or was dropped (its sender went with it).
    let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
    let queued = pool.queue.lock().ok()?.send(job);
    if let Err(mpsc::SendError(job)) = queued {
        drop(job);
        return None;
    }
    done_rx.recv().ok()
}
