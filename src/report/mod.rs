//! Reports: plots of a run's metrics.

mod plots;

pub use plots::plot_run;
