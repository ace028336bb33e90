// A local development chain for libshare's tests: Prague rules (the contracts are compiled
// for them), automine, and a block gas limit large enough for batched registrations.
module.exports = {
  networks: {
    hardhat: {
      hardfork: "prague",
      chainId: 31337,
      blockGasLimit: 60000000,
      mining: { auto: true, interval: 0 },
    },
  },
};
