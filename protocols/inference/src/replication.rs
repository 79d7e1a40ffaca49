//! What a runner needs to replicate the inference service with any BFT protocol.
//!
//! ```text
//! let config = replication::run_service_config();
//! let plan = faulty::parse_fault_plan("1:weight-flip@10", nodes)?;   // --service-fault
//! let services = replication::replica_services(config.clone(), plan.clone());
//! let make = move |id| FastBft::for_service(fastbft_config.clone(), services(id));
//! let client = |c, share| FastBftClient::new(client_config, replication::client_workload(share));
//! // judge: facts.byzantine.extend(faulty::faulty_nodes(&plan));
//! //        check_inference_run(&InferenceSpec::new(config), &observations, &facts, &CheckConfig::default())
//! ```

use dst_sim::NodeId;

use crate::faulty::{fault_of, FaultyService, ServiceFault};
use crate::model::ModelConfig;
use crate::service::{InferenceService, ServiceConfig};
use crate::workload::{InferenceWorkload, InferenceWorkloadConfig};

/// Model seed of simulated runs (any fixed value: replicas derive the weights from it).
pub const RUN_MODEL_SEED: u64 = 7;

/// The service simulated runs replicate: the small hybrid model, default limits.
pub fn run_service_config() -> ServiceConfig {
    ServiceConfig::new(ModelConfig::hybrid(RUN_MODEL_SEED))
}

/// The service of each replica: `config` with the plan's fault for that node (none for
/// nodes the plan does not name). The weights are generated once and shared.
pub fn replica_services(
    config: ServiceConfig,
    plan: Vec<(u32, ServiceFault)>,
) -> impl Fn(NodeId) -> FaultyService + Clone + 'static {
    let base = InferenceService::new(config);
    move |id: NodeId| FaultyService::new(base.clone(), fault_of(&plan, id.0))
}

/// The workload of one client issuing `requests` requests.
pub fn client_workload(requests: u64) -> InferenceWorkload {
    InferenceWorkload::new(InferenceWorkloadConfig::small(requests))
}
