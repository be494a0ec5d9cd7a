/**
 * The sandbox's seccomp filter (issue 27, docs/sandbox.md): a classic BPF program, built here byte
 * by byte (no libseccomp in Deno), that bubblewrap installs on the sandboxed process (`--seccomp`).
 *
 * It refuses, with EPERM:
 *   - socket() and socketpair() of any family but AF_UNIX: no network of any kind, even if a
 *     namespace were missing;
 *   - ptrace, mount/umount2, pivot_root, bpf, keyctl/add_key/request_key, unshare/setns,
 *     perf_event_open, userfaultfd, io_uring, process_vm_readv/writev, open_by_handle_at and
 *     name_to_handle_at, kexec and module loading;
 * and answers clone3 with ENOSYS (so that the C library falls back to clone, whose flags the
 * namespaces already bound). A process of another architecture is killed; on x86_64 the x32 ABI
 * (syscall numbers with bit 30 set) is refused.
 */

/** The architectures the filter knows: their AUDIT_ARCH value and the syscall numbers it names. */
const ARCHES = {
  x86_64: {
    audit: 0xc000003e,
    socket: 41, socketpair: 53,
    refused: {
      ptrace: 101, mount: 165, umount2: 166, pivot_root: 155, bpf: 321, keyctl: 250, add_key: 248, request_key: 249,
      unshare: 272, setns: 308, perf_event_open: 298, userfaultfd: 323, io_uring_setup: 425, io_uring_enter: 426,
      io_uring_register: 427, process_vm_readv: 310, process_vm_writev: 311, open_by_handle_at: 304, name_to_handle_at: 303,
      kexec_load: 246, kexec_file_load: 320, init_module: 175, finit_module: 313, delete_module: 176,
    },
    clone3: 435,
    x32: true,
  },
  aarch64: {
    audit: 0xc00000b7,
    socket: 198, socketpair: 199,
    refused: {
      ptrace: 117, mount: 40, umount2: 39, pivot_root: 41, bpf: 280, keyctl: 219, add_key: 217, request_key: 218,
      unshare: 97, setns: 268, perf_event_open: 241, userfaultfd: 282, io_uring_setup: 425, io_uring_enter: 426,
      io_uring_register: 427, process_vm_readv: 270, process_vm_writev: 271, open_by_handle_at: 265, name_to_handle_at: 264,
      kexec_load: 104, kexec_file_load: 294, init_module: 105, finit_module: 273, delete_module: 106,
    },
    clone3: 435,
    x32: false,
  },
} as const;

export type SeccompArch = keyof typeof ARCHES;

/** The syscalls the filter refuses with EPERM on `arch` (beyond non-AF_UNIX sockets). */
export function refusedSyscalls(arch: SeccompArch): string[] {
  return Object.keys(ARCHES[arch].refused);
}

// BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;
const AF_UNIX = 1;
// Offsets in struct seccomp_data: nr, arch, instruction_pointer, args[6] (64-bit each; little-endian low word first).
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

type Insn = { code: number; jt: number | string; jf: number | string; k: number; label?: string };

/** The filter for `arch`, as the bytes bubblewrap reads from its --seccomp descriptor. */
export function seccompFilter(arch: SeccompArch): Uint8Array {
  const a = ARCHES[arch];
  const prog: Insn[] = [
    { code: LD_W_ABS, jt: 0, jf: 0, k: ARCH },
    { code: JEQ_K, jt: 1, jf: 0, k: a.audit },
    { code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS },
    { code: LD_W_ABS, jt: 0, jf: 0, k: NR },
  ];
  if (a.x32) prog.push({ code: JGE_K, jt: "eperm", jf: 0, k: 0x40000000 });
  prog.push({ code: JEQ_K, jt: "socket", jf: 0, k: a.socket });
  prog.push({ code: JEQ_K, jt: "socket", jf: 0, k: a.socketpair });
  prog.push({ code: JEQ_K, jt: "enosys", jf: 0, k: a.clone3 });
  for (const nr of Object.values(a.refused)) prog.push({ code: JEQ_K, jt: "eperm", jf: 0, k: nr });
  prog.push({ code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW });
  prog.push({ code: LD_W_ABS, jt: 0, jf: 0, k: ARG0_LOW, label: "socket" });
  prog.push({ code: JEQ_K, jt: 0, jf: "eperm", k: AF_UNIX });
  prog.push({ code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ALLOW });
  prog.push({ code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | EPERM, label: "eperm" });
  prog.push({ code: RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | ENOSYS, label: "enosys" });

  const at = new Map(prog.flatMap((insn, i) => (insn.label ? [[insn.label, i] as const] : [])));
  const offset = (from: number, to: number | string): number => {
    if (typeof to === "number") return to;
    const target = at.get(to);
    // Classic BPF jumps only forward.
    if (target === undefined || target <= from) throw new Error(`seccomp: no label ${to} after instruction ${from}`);
    const jump = target - from - 1;
    if (jump > 255) throw new Error("seccomp: jump too far");
    return jump;
  };
  const bytes = new Uint8Array(prog.length * 8);
  const view = new DataView(bytes.buffer);
  prog.forEach((insn, i) => {
    view.setUint16(i * 8, insn.code, true);
    view.setUint8(i * 8 + 2, offset(i, insn.jt));
    view.setUint8(i * 8 + 3, offset(i, insn.jf));
    view.setUint32(i * 8 + 4, insn.k >>> 0, true);
  });
  return bytes;
}
