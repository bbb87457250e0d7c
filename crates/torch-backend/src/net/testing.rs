//! Helpers for the architecture tests, and [`Guarded`], which runs a
//! `tch::vision` graph (a panicking reference) as a fallible stage.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, TchError, Tensor};

use crate::net::Network;
use crate::net::layers::Forward;

/// Random weights with batch-norm statistics far from identity (so
/// folding and batch-norm have something to do), activations of about
/// unit scale.
pub(crate) fn randomise(store: &VarStore) {
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (name, mut variable) in store.variables() {
            let size = variable.size();
            let normal = Tensor::randn(size.as_slice(), (Kind::Float, Device::Cpu));
            let value = if name.ends_with("running_var") {
                Tensor::rand(size.as_slice(), (Kind::Float, Device::Cpu)) * 0.5 + 1.0
            } else if name.ends_with("running_mean") || size.len() == 1 {
                normal * 0.1 + if name.ends_with("weight") { 1.0 } else { 0.0 }
            } else {
                let fan_in: i64 = size[1..].iter().product();
                normal * (1.0 / fan_in as f64).sqrt()
            };
            variable.copy_(&value);
        }
    });
}

/// Copies `from`'s variables into `to`'s, which must have the same
/// names and shapes (a check that two implementations read the same
/// checkpoint keys).
pub(crate) fn copy_variables(from: &VarStore, to: &VarStore) {
    let source = from.variables();
    let mut names: Vec<String> = source.keys().cloned().collect();
    let mut theirs: Vec<String> = to.variables().keys().cloned().collect();
    names.sort();
    theirs.sort();
    assert_eq!(
        names, theirs,
        "the two implementations name their weights differently"
    );
    tch::no_grad(|| {
        for (name, mut variable) in to.variables() {
            assert_eq!(variable.size(), source[&name].size(), "{name}");
            variable.copy_(&source[&name]);
        }
    });
}

/// Logits of `network` for a random `[n, 3, height, width]` input.
pub(crate) fn logits(network: &Network, input: &Tensor) -> Tensor {
    tch::no_grad(|| {
        network
            .features(input)
            .and_then(|features| network.head(&features))
            .unwrap()
    })
}

/// Asserts `ours` equals `theirs` within 1e-4 of their scale.
pub(crate) fn assert_close(ours: &Tensor, theirs: &Tensor, what: &str) {
    assert_eq!(ours.size(), theirs.size(), "{what}");
    let scale = theirs.abs().max().double_value(&[]).max(1.0);
    let difference = (ours - theirs).abs().max().double_value(&[]);
    assert!(
        difference <= 1e-4 * scale,
        "{what}: max |diff| {difference} at scale {scale}"
    );
}

thread_local! {
    /// Set while a [`Guarded`] forward runs on this thread, so the panic
    /// hook stays quiet about the panic it turns into an error.
    static GUARDING: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics [`Guarded`]
/// catches and hands every other panic to the hook that was there before.
fn quiet_guarded_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// A `tch::vision`-style module whose forward calls libtorch's panicking
/// wrappers: a panic inside it becomes a libtorch error.
#[derive(Debug)]
pub(crate) struct Guarded(pub(crate) Box<dyn ModuleT>);

impl Forward for Guarded {
    fn forward(&self, xs: &Tensor) -> Result<Tensor, TchError> {
        quiet_guarded_panics();
        let was = GUARDING.with(|guarding| guarding.replace(true));
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.0.forward_t(xs, false)));
        GUARDING.with(|guarding| guarding.set(was));
        result.map_err(|payload| {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("the forward panicked");
            TchError::Torch(message.to_owned())
        })
    }
}
