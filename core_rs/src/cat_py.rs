//! PyO3 bindings of the CAT engine ([`crate::cat`]) as classes of `core_rs._native`.
//!
//! Steps take microseconds, so these keep the GIL: releasing and re-taking it
//! would cost more than the work.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::cat::{self, Bank, CatError, Config, Exposure, ItemParams, Session};

fn value_error(e: CatError) -> PyErr {
    PyValueError::new_err(e.0)
}

/// An item bank for adaptive testing: GRM items (2PL when one threshold) with
/// likelihoods and information precomputed on a quadrature grid.
#[pyclass(frozen, module = "core_rs._native")]
pub struct CatBank {
    bank: Arc<Bank>,
}

#[pymethods]
impl CatBank {
    #[new]
    #[pyo3(signature = (discrimination, thresholds, areas, *, grid_min=-4.0, grid_max=4.0, grid_points=81, prior_mean=0.0, prior_sd=1.0))]
    // Spelled out because PyO3 renders the negative default as `...`.
    #[pyo3(text_signature = "(discrimination, thresholds, areas, *, grid_min=-4.0, grid_max=4.0, grid_points=81, prior_mean=0.0, prior_sd=1.0)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        discrimination: Vec<f64>,
        thresholds: Vec<Vec<f64>>,
        areas: Vec<usize>,
        grid_min: f64,
        grid_max: f64,
        grid_points: usize,
        prior_mean: f64,
        prior_sd: f64,
    ) -> PyResult<Self> {
        if thresholds.len() != discrimination.len() || areas.len() != discrimination.len() {
            return Err(PyValueError::new_err(format!(
                "discrimination, thresholds and areas need one entry per item (got {}, {}, {})",
                discrimination.len(),
                thresholds.len(),
                areas.len()
            )));
        }
        let items = discrimination
            .into_iter()
            .zip(thresholds)
            .zip(areas)
            .map(|((a, thresholds), area)| ItemParams { a, thresholds, area })
            .collect();
        let bank = Bank::new(items, grid_min, grid_max, grid_points, prior_mean, prior_sd)
            .map_err(value_error)?;
        Ok(CatBank { bank: Arc::new(bank) })
    }

    #[getter]
    fn n_items(&self) -> usize {
        self.bank.items().len()
    }

    #[getter]
    fn n_areas(&self) -> usize {
        self.bank.n_areas()
    }

    fn categories(&self, item: usize) -> PyResult<usize> {
        Ok(self.item(item)?.categories())
    }

    fn information(&self, item: usize, theta: f64) -> PyResult<f64> {
        let p = self.item(item)?;
        Ok(cat::information(p.a, &p.thresholds, theta))
    }

    fn probabilities(&self, item: usize, theta: f64) -> PyResult<Vec<f64>> {
        let p = self.item(item)?;
        let mut out = vec![0.0; p.categories()];
        cat::category_probabilities(p.a, &p.thresholds, theta, &mut out);
        Ok(out)
    }
}

impl CatBank {
    fn item(&self, item: usize) -> PyResult<&ItemParams> {
        self.bank.items().get(item).ok_or_else(|| {
            PyValueError::new_err(format!("item {item} is not in the bank ({} items)", self.bank.items().len()))
        })
    }
}

const _: () = assert!(cat::DEFAULT_A_DISCOUNT == 0.0, "update CatSession's a_discount default");

/// One candidate's adaptive test on a :class:`CatBank`.
#[pyclass(module = "core_rs._native")]
pub struct CatSession {
    bank: Arc<Bank>,
    session: Session,
}

#[pymethods]
impl CatSession {
    #[new]
    #[pyo3(signature = (bank, *, blueprint=None, max_items=20, min_items=1, se_target=0.3, eligible=None, randomesque_items=1, randomesque_k=5, seed=0, a_discount=0.0))]
    // A literal so that Python sees the default (a path renders as `...`); the
    // assertion above keeps it equal to cat::DEFAULT_A_DISCOUNT.
    #[allow(clippy::too_many_arguments)]
    fn new(
        bank: &CatBank,
        blueprint: Option<Vec<f64>>,
        max_items: usize,
        min_items: usize,
        se_target: f64,
        eligible: Option<Vec<bool>>,
        randomesque_items: usize,
        randomesque_k: usize,
        seed: u64,
        a_discount: f64,
    ) -> PyResult<Self> {
        let config = Config {
            blueprint: blueprint.unwrap_or_default(),
            max_items,
            min_items,
            se_target,
            randomesque_items,
            randomesque_k,
            a_discount,
            seed,
        };
        let session = Session::new(&bank.bank, config, eligible).map_err(value_error)?;
        Ok(CatSession { bank: Arc::clone(&bank.bank), session })
    }

    #[getter]
    fn theta(&self) -> f64 {
        self.session.theta()
    }

    #[getter]
    fn standard_error(&self) -> f64 {
        self.session.standard_error()
    }

    #[getter]
    fn administered(&self) -> Vec<usize> {
        self.session.administered().to_vec()
    }

    #[getter]
    fn responses(&self) -> Vec<(usize, usize)> {
        self.session.responses().to_vec()
    }

    #[getter]
    fn area_counts(&self) -> Vec<usize> {
        self.session.area_counts().to_vec()
    }

    #[getter]
    fn eligible(&self) -> Vec<bool> {
        self.session.eligible().to_vec()
    }

    fn stop_reason(&self) -> Option<&'static str> {
        self.session.stop_reason(&self.bank).map(|r| r.as_str())
    }

    fn next_item(&mut self) -> Option<usize> {
        self.session.next_item(&self.bank)
    }

    fn administer(&mut self, item: usize) -> PyResult<()> {
        self.session.administer(&self.bank, item).map_err(value_error)
    }

    fn record(&mut self, item: usize, category: usize) -> PyResult<()> {
        self.session.record(&self.bank, item, category).map_err(value_error)
    }

    fn step(&mut self, item: usize, category: usize) -> PyResult<Option<usize>> {
        self.session.record(&self.bank, item, category).map_err(value_error)?;
        Ok(self.session.next_item(&self.bank))
    }

    fn blueprint_met(&self) -> bool {
        self.session.blueprint_met()
    }

    fn area_estimates(&self) -> Vec<(f64, f64, usize)> {
        self.session.area_estimates(&self.bank)
    }
}

/// Item-eligibility exposure control shared by all sessions on one bank.
#[pyclass(module = "core_rs._native")]
pub struct ExposureControl {
    exposure: Exposure,
}

#[pymethods]
impl ExposureControl {
    #[new]
    #[pyo3(signature = (n_items, max_rate, *, n_sessions=0, n_eligible=None, n_administered=None))]
    fn new(
        n_items: usize,
        max_rate: f64,
        n_sessions: u64,
        n_eligible: Option<Vec<u64>>,
        n_administered: Option<Vec<u64>>,
    ) -> PyResult<Self> {
        let eligible = n_eligible.unwrap_or_else(|| vec![0; n_items]);
        let administered = n_administered.unwrap_or_else(|| vec![0; n_items]);
        if eligible.len() != n_items {
            return Err(PyValueError::new_err(format!("n_eligible has {} counts for {n_items} items", eligible.len())));
        }
        let exposure = Exposure::with_counts(max_rate, n_sessions, eligible, administered).map_err(value_error)?;
        Ok(ExposureControl { exposure })
    }

    #[getter]
    fn max_rate(&self) -> f64 {
        self.exposure.max_rate()
    }

    #[getter]
    fn n_sessions(&self) -> u64 {
        self.exposure.n_sessions()
    }

    #[getter]
    fn n_eligible(&self) -> Vec<u64> {
        self.exposure.n_eligible().to_vec()
    }

    #[getter]
    fn n_administered(&self) -> Vec<u64> {
        self.exposure.n_administered().to_vec()
    }

    fn probabilities(&self) -> Vec<f64> {
        self.exposure.probabilities()
    }

    fn draw(&self, seed: u64) -> Vec<bool> {
        self.exposure.draw(seed)
    }

    fn record(&mut self, eligible: Vec<bool>, administered: Vec<usize>) -> PyResult<()> {
        self.exposure.record(&eligible, &administered).map_err(value_error)
    }
}

/// Adds the CAT classes to the extension module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CatBank>()?;
    m.add_class::<CatSession>()?;
    m.add_class::<ExposureControl>()?;
    Ok(())
}
