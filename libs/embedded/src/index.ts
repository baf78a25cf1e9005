export { startEmbedded } from './embedded-stack';
export type { EmbeddedOptions, EmbeddedStack } from './embedded-stack';
