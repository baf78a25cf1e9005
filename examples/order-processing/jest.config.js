module.exports = { ...require('../../jest.preset.js'), displayName: '@multiagents/example-order-processing' };
