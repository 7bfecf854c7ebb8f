using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxySelection.Interception.Bpf;

/// <summary>
/// MP_JOINs taken in the kernel. The egress programs learn the listener's tokens into a hash map (<see cref="TokenLearning"/>),
/// the engine removes a token at its connection's end (<see cref="Remove"/>) and stores every held connection's token
/// again before it vouches for the map (<see cref="Add"/>, <see cref="Acknowledge"/>), and <see cref="Sweep"/> removes
/// tokens of handshakes that never became a connection. So the map holds every token this proxy handed out, and two matches pinned for the raw table's <c>-m bpf --object-pinned</c>
/// rules decide joins without the queue: <see cref="PinPath"/> sends a join for such a token to the listener (the
/// kernel's listener authenticates it, RFC 8684 HMAC; a token it no longer knows gets its RST, as before), and
/// <see cref="ForeignPinPath"/> passes a join for any other token, while the map is whole (<see cref="JoinMapState"/>).
/// </summary>
internal sealed class KernelJoinTokens : IDisposable
{
    /// <summary>The pins' directory on the host's bpf file system (systemd mounts it; pinning needs no capability there).</summary>
    public const string HostPinDirectory = "/sys/fs/bpf/proxysel";

    /// <summary>A bpf file system of the daemon's own, where none is mounted at /sys/fs/bpf (a fresh mount namespace, as
    /// under <c>ip netns exec</c>); mounting it needs CAP_SYS_ADMIN.</summary>
    public const string OwnPinDirectory = "/run/proxysel/bpf";

    /// <summary>Below either directory, the foreign-join matches (same names: the cleanup reads the pid from the name).</summary>
    private const string ForeignSubdirectory = "foreign";

    /// <summary>Below either directory, the RST gates (<see cref="RstGateProgram"/>), same names.</summary>
    private const string RstGateSubdirectory = "rst";

    private static readonly string[] PinDirectories =
        [HostPinDirectory, OwnPinDirectory, .. new[] { ForeignSubdirectory, RstGateSubdirectory }.SelectMany(d => new[] { Path.Combine(HostPinDirectory, d), Path.Combine(OwnPinDirectory, d) })];

    private readonly SafeFileHandle _tokens;
    private readonly SafeFileHandle _scratch;
    private readonly SafeFileHandle _state;
    private readonly SafeFileHandle _program;
    private readonly SafeFileHandle _foreign;
    private readonly SafeFileHandle _gate;
    private readonly SafeFileHandle _gateProgram;
    private bool _disposed;

    private KernelJoinTokens(SafeFileHandle tokens, SafeFileHandle scratch, SafeFileHandle state, SafeFileHandle program, SafeFileHandle foreign,
        SafeFileHandle gate, SafeFileHandle gateProgram, string pinPath, string foreignPinPath, string rstGatePinPath)
    {
        _gate = gate;
        _gateProgram = gateProgram;
        RstGatePinPath = rstGatePinPath;
        _tokens = tokens;
        _scratch = scratch;
        _state = state;
        _program = program;
        _foreign = foreign;
        PinPath = pinPath;
        ForeignPinPath = foreignPinPath;
    }

    public string PinPath { get; }

    public string ForeignPinPath { get; }

    /// <summary>The pinned RST gate (<see cref="RstGateProgram"/>) for the ruleset's RST queue rule.</summary>
    public string RstGatePinPath { get; }

    /// <summary>Opens (a SYN is held: RSTs toward the ports are queued) or closes the RST gate; 0 or the errno.</summary>
    public int SetRstGate(bool open)
    {
        if (_disposed)
        {
            return 0;
        }

        Span<byte> key = stackalloc byte[4];
        Span<byte> value = stackalloc byte[8];
        key.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(value, open ? 1UL : 0UL);
        return BpfNative.UpdateElement(_gate, key, value);
    }

    public SafeFileHandle Program => _program;

    /// <summary>Whether <paramref name="token"/> (its 4 bytes as MP_JOIN carries them) is in the map.</summary>
    public bool Contains(ReadOnlySpan<byte> token) => BpfNative.LookupElement(_tokens, token, stackalloc byte[8]) == 0;

    /// <summary>Stores a held connection's token (its value: now, on the clock bpf_ktime_get_ns reads); 0 or the errno
    /// (E2BIG: the map is full, and the caller keeps the foreign match closed).</summary>
    public int Add(uint token)
    {
        if (_disposed)
        {
            return 0;
        }

        Span<byte> key = stackalloc byte[4];
        Span<byte> value = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(key, token);
        BinaryPrimitives.WriteInt64LittleEndian(value, MonotonicNanoseconds());
        return BpfNative.UpdateElement(_tokens, key, value);
    }

    /// <summary>Removes a connection's token at its end: its joins are no longer this proxy's.</summary>
    public void Remove(uint token)
    {
        if (_disposed)
        {
            return; // a relay that ended after the stop
        }

        Span<byte> key = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(key, token);
        BpfNative.DeleteElement(_tokens, key);
    }

    /// <summary>
    /// Removes tokens stored more than <paramref name="age"/> ago that <paramref name="held"/> does not know: a
    /// handshake that never became a connection (the client gave up after the SYN/ACK, or a forged SYN), whose token
    /// would otherwise fill the map. Returns how many went.
    /// </summary>
    public int Sweep(Func<uint, bool> held, TimeSpan age)
    {
        long before = MonotonicNanoseconds() - (long)(age.TotalMilliseconds * 1_000_000);
        var stale = new List<uint>();
        Span<byte> key = stackalloc byte[4];
        Span<byte> next = stackalloc byte[4];
        Span<byte> value = stackalloc byte[8];
        bool first = true;
        while (BpfNative.NextKey(_tokens, first ? default : key, next) == 0)
        {
            first = false;
            next.CopyTo(key);
            uint token = BinaryPrimitives.ReadUInt32BigEndian(key);
            if (BpfNative.LookupElement(_tokens, key, value) == 0 && BinaryPrimitives.ReadInt64LittleEndian(value) < before && !held(token))
            {
                stale.Add(token);
            }
        }

        foreach (uint token in stale)
        {
            Remove(token);
        }

        return stale.Count;
    }

    /// <summary>The state the foreign match reads (<see cref="JoinMapState"/>): failures, acknowledged, last failure (ns).</summary>
    public (ulong Failures, ulong Acknowledged, long LastFailureNs) ReadState() =>
        (ReadSlot(JoinMapState.Failures), ReadSlot(JoinMapState.Acknowledged), (long)ReadSlot(JoinMapState.LastFailure));

    /// <summary>Sets <see cref="JoinMapState.Acknowledged"/>: <paramref name="failures"/> opens the foreign match (when
    /// no failure came since), <see cref="JoinMapState.Blocked"/> closes it.</summary>
    public void Acknowledge(ulong failures)
    {
        Span<byte> key = stackalloc byte[4];
        Span<byte> value = stackalloc byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(key, JoinMapState.Acknowledged);
        BinaryPrimitives.WriteUInt64LittleEndian(value, failures);
        BpfNative.UpdateElement(_state, key, value);
    }

    private static long MonotonicNanoseconds() => KernelJoinClock.Nanoseconds();

    private ulong ReadSlot(int slot)
    {
        Span<byte> key = stackalloc byte[4];
        Span<byte> value = stackalloc byte[8];
        BinaryPrimitives.WriteInt32LittleEndian(key, slot);
        return BpfNative.LookupElement(_state, key, value) == 0 ? BinaryPrimitives.ReadUInt64LittleEndian(value) : JoinMapState.Blocked;
    }

    public TokenLearningMaps Learning(uint listenerMark) =>
        new((int)_tokens.DangerousGetHandle(), (int)_scratch.DangerousGetHandle(), (int)_state.DangerousGetHandle(), listenerMark);

    /// <summary>Creates the maps, loads and pins both matches as <paramref name="name"/>; false with a one-line reason. The
    /// foreign match starts closed (<see cref="JoinMapState.Blocked"/>): the caller opens it.</summary>
    public static bool TryCreate(string name, int maxTokens, SafeFileHandle counters, out KernelJoinTokens? joins, out string? reason)
    {
        joins = null;
        var handles = new List<SafeFileHandle>();
        try
        {
            var tokens = BpfNative.CreateMap(BpfNative.MapTypeHash, 4, 8, maxTokens, 0, "psel_join_tok", out int errno);
            handles.Add(tokens);
            if (tokens.IsInvalid)
            {
                reason = $"kernel joins: BPF_MAP_CREATE (tokens): {BpfNative.Errno(errno)}";
                return false;
            }

            // Its own scratch: a sock_ops program interrupted on this CPU by a softirq's transmit must not find its HMAC state overwritten.
            var scratch = BpfNative.CreateMap(BpfNative.MapTypePercpuArray, 4, Sha256Layout.Size, 1, 0, "psel_join_tmp", out errno);
            handles.Add(scratch);
            if (scratch.IsInvalid)
            {
                reason = $"kernel joins: BPF_MAP_CREATE (scratch): {BpfNative.Errno(errno)}";
                return false;
            }

            var state = BpfNative.CreateMap(BpfNative.MapTypeArray, 4, 8, JoinMapState.Slots, 0, "psel_join_st", out errno);
            handles.Add(state);
            if (state.IsInvalid)
            {
                reason = $"kernel joins: BPF_MAP_CREATE (state): {BpfNative.Errno(errno)}";
                return false;
            }

            Span<byte> slot = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(slot, JoinMapState.Acknowledged);
            BpfNative.UpdateElement(state, slot, BitConverter.GetBytes(JoinMapState.Blocked));

            byte[] code = JoinMatchProgram.Emit((int)tokens.DangerousGetHandle(), (int)counters.DangerousGetHandle());
            var program = BpfNative.LoadProgram(BpfNative.ProgTypeSocketFilter, code, 0, "psel_join", out errno, out string log);
            handles.Add(program);
            if (program.IsInvalid)
            {
                reason = $"kernel joins: BPF_PROG_LOAD (join match): {BpfNative.Errno(errno)} verifier: {log.Trim().Split('\n')[^1]}";
                return false;
            }

            code = JoinMatchProgram.EmitForeign((int)tokens.DangerousGetHandle(), (int)state.DangerousGetHandle(), (int)counters.DangerousGetHandle());
            var foreign = BpfNative.LoadProgram(BpfNative.ProgTypeSocketFilter, code, 0, "psel_join_pass", out errno, out log);
            handles.Add(foreign);
            if (foreign.IsInvalid)
            {
                reason = $"kernel joins: BPF_PROG_LOAD (foreign join match): {BpfNative.Errno(errno)} verifier: {log.Trim().Split('\n')[^1]}";
                return false;
            }

            // The RST gate starts closed (the array's value is 0): nothing is held yet.
            var gate = BpfNative.CreateMap(BpfNative.MapTypeArray, 4, 8, 1, 0, "psel_rst_gate", out errno);
            handles.Add(gate);
            if (gate.IsInvalid)
            {
                reason = $"kernel joins: BPF_MAP_CREATE (RST gate): {BpfNative.Errno(errno)}";
                return false;
            }

            var gateProgram = BpfNative.LoadProgram(BpfNative.ProgTypeSocketFilter, RstGateProgram.Emit((int)gate.DangerousGetHandle()), 0,
                "psel_rst_gate", out errno, out log);
            handles.Add(gateProgram);
            if (gateProgram.IsInvalid)
            {
                reason = $"kernel joins: BPF_PROG_LOAD (RST gate): {BpfNative.Errno(errno)} verifier: {log.Trim().Split('\n')[^1]}";
                return false;
            }

            if (!TryPinDirectory(out string? directory, out reason))
            {
                return false;
            }

            string path = Path.Combine(directory!, name);
            string foreignPath = Path.Combine(directory!, ForeignSubdirectory, name);
            string gatePath = Path.Combine(directory!, RstGateSubdirectory, name);
            var pinned = new List<string>();
            foreach (var (handle, pin) in new[] { (program, path), (foreign, foreignPath), (gateProgram, gatePath) })
            {
                Directory.CreateDirectory(Path.GetDirectoryName(pin)!);
                File.Delete(pin); // a killed daemon's of the same pid
                int error = BpfNative.Pin(handle, pin);
                if (error != 0)
                {
                    pinned.ForEach(File.Delete);
                    reason = $"kernel joins: BPF_OBJ_PIN {pin}: {BpfNative.Errno(error)}";
                    return false;
                }

                pinned.Add(pin);
            }

            joins = new KernelJoinTokens(tokens, scratch, state, program, foreign, gate, gateProgram, path, foreignPath, gatePath);
            reason = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            reason = $"kernel joins: {e.Message}";
            return false;
        }
        finally
        {
            if (joins == null)
            {
                foreach (var handle in handles)
                {
                    handle.Dispose();
                }
            }
        }
    }

    /// <summary>The host's bpf file system when /sys/fs/bpf is one (a service under systemd: no mount, so no
    /// CAP_SYS_ADMIN), else one of the daemon's own at <see cref="OwnPinDirectory"/>.</summary>
    private static bool TryPinDirectory(out string? directory, out string? reason)
    {
        reason = null;
        if (IsBpfMount("/sys/fs/bpf"))
        {
            try
            {
                Directory.CreateDirectory(HostPinDirectory);
                directory = HostPinDirectory;
                return true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Read-only here: a mount of our own below.
            }
        }

        directory = OwnPinDirectory;
        Directory.CreateDirectory(OwnPinDirectory);
        if (IsBpfMount(OwnPinDirectory))
        {
            return true;
        }

        if (BpfNative.Mount("bpf", OwnPinDirectory, "bpf", 0, 0) != 0)
        {
            reason = $"kernel joins: no bpf file system at /sys/fs/bpf, and mount -t bpf at {OwnPinDirectory}: {BpfNative.Errno(Marshal.GetLastPInvokeError())}";
            return false;
        }

        return true;
    }

    private static bool IsBpfMount(string mountPoint)
    {
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            int dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash > 0 && line.AsSpan(dash + 3).StartsWith("bpf ") && line.Split(' ')[4] == mountPoint)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Removes the pins of <paramref name="prefix"/>'s daemons whose process is gone (a killed one's; a live daemon's
    /// stays); returns the paths removed. Each name ends in its daemon's process id.
    /// </summary>
    public static IReadOnlyList<string> CleanupPrefixed(string prefix)
    {
        var removed = new List<string>();
        foreach (string path in PinDirectories.Where(Directory.Exists).SelectMany(d => Directory.EnumerateFiles(d, prefix + "*")))
        {
            string pid = Path.GetFileName(path)[prefix.Length..];
            if (int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out int id) && Directory.Exists($"/proc/{id}"))
            {
                continue;
            }

            try
            {
                File.Delete(path);
                removed.Add(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Left for the next cleanup.
            }
        }

        return removed;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (string pin in new[] { PinPath, ForeignPinPath, RstGatePinPath })
        {
            try
            {
                File.Delete(pin);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The rule holds its own reference; cleanup removes the file later.
            }
        }

        _gateProgram.Dispose();
        _gate.Dispose();
        _foreign.Dispose();
        _state.Dispose();
        _program.Dispose();
        _scratch.Dispose();
        _tokens.Dispose();
    }
}

/// <summary>The clock of the join map's stamps.</summary>
public static class KernelJoinClock
{
    /// <summary>CLOCK_MONOTONIC in nanoseconds (.NET's Stopwatch on Linux), the clock bpf_ktime_get_ns reads.</summary>
    public static long Nanoseconds() => (long)(Stopwatch.GetTimestamp() * (1_000_000_000.0 / Stopwatch.Frequency));
}
