//! Panics of other people's code on untrusted input — a Parquet decoder on
//! damaged bytes, an interpreter reader on memory that changed while it was
//! read — caught and turned into errors, without their message on stderr.
//! Every other panic is printed by the hook that was there before.

use std::cell::{Cell, RefCell};

thread_local! {
    /// Set while this thread runs a step under [`catch`].
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The message of the last panic caught on this thread.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST.with(|last| *last.borrow_mut() = Some(format!("{message}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `step`; a panic in it becomes `Err(message)`, not printed.
pub fn catch<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    install();
    let was = QUIET.with(|q| q.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(step));
    QUIET.with(|q| q.set(was));
    result.map_err(|_| {
        LAST.with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| "panic".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        let err = catch(|| -> u32 { panic!("torn read {}", 7) }).unwrap_err();
        assert!(err.starts_with("torn read 7 at "), "{err}");
        assert_eq!(catch(|| 5), Ok(5));
        // Nested: the outer step is still quiet after the inner one.
        let outer = catch(|| {
            let _ = catch(|| panic!("inner"));
            panic!("outer")
        });
        assert!(outer.unwrap_err().starts_with("outer"));
    }
}
