//! The simulated network: latency, loss, duplication, partitions, slow peers.

use crate::{rng::Rng, Millis};

/// How long a message takes to arrive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Uniform in `[min, max]` ms. Random latencies reorder messages naturally.
    Uniform {
        /// Fastest delivery.
        min: Millis,
        /// Slowest delivery.
        max: Millis,
    },
    /// `min` plus an exponentially distributed delay with mean `mean` ms (a long tail).
    Exponential {
        /// Fixed part.
        min: Millis,
        /// Mean of the random part.
        mean: f64,
    },
}

impl Latency {
    /// Draws one delay.
    pub fn sample(&self, rng: &mut Rng) -> Millis {
        match *self {
            Latency::Uniform { min, max } => rng.range(min, max),
            Latency::Exponential { min, mean } => min + rng.exponential(mean).round() as Millis,
        }
    }
}

/// The network model of a simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetConfig {
    /// Delivery delay of each message.
    pub latency: Latency,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice (with independent delays).
    pub duplicate: f64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig { latency: Latency::Uniform { min: 1, max: 10 }, loss: 0.0, duplicate: 0.0 }
    }
}

impl NetConfig {
    /// A LAN-like network: 1–10 ms, nothing lost.
    pub fn lan() -> Self {
        NetConfig::default()
    }

    /// The Chord paper's wide-area setting: exponentially distributed delays, mean 50 ms.
    pub fn wan() -> Self {
        NetConfig { latency: Latency::Exponential { min: 1, mean: 50.0 }, ..NetConfig::default() }
    }

    /// The same network losing a fraction `loss` of messages.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    /// The same network duplicating a fraction `duplicate` of messages.
    pub fn with_duplicates(mut self, duplicate: f64) -> Self {
        self.duplicate = duplicate;
        self
    }
}
