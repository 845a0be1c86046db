// `qrx-noop`: a program that only starts and exits, the floor under every program of ours
// (src/bench/call.ts measures it).
export {};
