export { createResearchWorkers, ResearchWorker, RESEARCH_PRICES } from './research-workers';
export { startResearchDemo, loadResearchWorkflow } from './research-demo';
