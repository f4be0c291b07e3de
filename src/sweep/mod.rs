//! Sweeps: expand a sweep file into a manifest of fully resolved runs ([`spec`]), run them
//! idempotently on one machine or under a scheduler's array index ([`runner`]), hand them to
//! Slurm ([`slurm`]), and summarise them with Liu et al. 2022's phases ([`collect`]); the
//! diagrams are drawn by [`crate::report::sweep_plots`].

pub mod collect;
pub mod runner;
pub mod slurm;
pub mod spec;
