using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using Microsoft.Win32.SafeHandles;

namespace ProxySelection.Interception.Bpf;

/// <summary>
/// The option bytes before the tag (6 for the short form, 8 for the long form: kind, length, subtype/version, experiment
/// id, P/Msg/Prio, proxy id[, key id, flags]) and the tag length (2 or 8). Option length = Prefix.Length + TagLength.
/// </summary>
public sealed record KernelSignedOption(byte[] Prefix, int TagLength);

/// <summary>What the kernel signs and with which key.</summary>
public sealed record KernelSignerConfig
{
    /// <summary>The current signing key (HMAC key, 16..64 bytes).</summary>
    public required byte[] Key { get; init; }

    /// <summary>Written on every SYN/ACK of a listener whose SO_MARK carries <see cref="KernelSigner.ListenerMark"/>.</summary>
    public KernelSignedOption? SynAck { get; init; }

    /// <summary>Slot 1..N: the option on the SYN of a connecting socket whose SO_MARK carries <see cref="KernelSigner.SlotMark"/>.</summary>
    public IReadOnlyDictionary<int, KernelSignedOption> Syn { get; init; } = new Dictionary<int, KernelSignedOption>();

    /// <summary>
    /// MPTCP segments: where the kernel refuses a second kind-30 option (beside MP_CAPABLE) store it under the
    /// placeholder kind 253 for <see cref="KernelSigner.TryAttachEgress"/> to relabel. Off: they go out without MP_PROXY.
    /// </summary>
    public bool RelabelMptcp { get; init; }
}

/// <summary>What the signing program did, summed over CPUs since it was loaded.</summary>
/// <param name="SynsSigned">SYNs that left with the option.</param>
/// <param name="SynAcksSigned">SYN/ACKs that left with the option.</param>
/// <param name="NoRoom">SYNs or SYN/ACKs the option did not fit (sent as they were: fail open); not an MP_JOIN's SYN/ACK, which carries none.</param>
/// <param name="Errors">
/// Options computed but not written (sent without): on this kernel chiefly an MPTCP segment, where bpf_store_hdr_opt
/// refuses a second kind-30 option beside MP_CAPABLE (-EEXIST).
/// </param>
/// <param name="Placeholders">Of the signed, those stored under the placeholder kind (MPTCP segments, <see cref="KernelSignerConfig.RelabelMptcp"/>).</param>
/// <param name="Relabelled">Placeholders the egress program turned back into kind 30.</param>
/// <param name="TokensLearnt">The listener's MPTCP SYN/ACKs whose token went into the join map (<see cref="KernelSigner.TryEnableJoins"/>).</param>
/// <param name="JoinsTaken">MP_JOIN SYNs the raw table's match sent to the listener, never queued.</param>
/// <param name="JoinsPassed">MP_JOIN SYNs for tokens not this proxy's that the raw table passed, never queued.</param>
public readonly record struct KernelSignerCounts(long SynsSigned, long SynAcksSigned, long NoRoom, long Errors, long Placeholders, long Relabelled,
    long TokensLearnt = 0, long JoinsTaken = 0, long JoinsPassed = 0);

/// <summary>
/// The kernel writes the signed MP_PROXY option on the proxy's own SYNs and SYN/ACKs (issue 13): a cgroup sock_ops
/// program (emitted here, no compiler) attached by a bpf_link to a cgroup v2 child this process moves into. Sockets
/// this process creates afterwards run the program; only those whose SO_MARK carries a slot are signed.
/// </summary>
public sealed class KernelSigner : IDisposable
{
    /// <summary>The mark bits the proxy already uses (InterceptMark 0x1, EgressMark 0x2): never part of the slot field.</summary>
    public const uint ReservedMarks = 0x3;

    /// <summary>The default slot field: SO_MARK bits 8-10 (values 1..6 are SYN slots, 7 the listener).</summary>
    public const uint DefaultSlotMask = 0x0000_0700;

    /// <summary>The option kind an MPTCP segment's MP_PROXY carries until <see cref="TryAttachEgress"/>'s program relabels it
    /// (the next bytes are MP_PROXY's own): whatever strips MP_PROXY before that hook must strip this too.</summary>
    public const byte PlaceholderKind = EgressRelabelProgram.PlaceholderKind;

    private readonly SafeFileHandle _config;
    private readonly SafeFileHandle _scratch;
    private readonly SafeFileHandle _counters;
    private readonly SafeFileHandle _program;
    private readonly SafeFileHandle _link;
    private readonly string _parentCgroup;
    private readonly int _shift;
    private readonly int _listenerValue;
    private readonly int _slotValues;
    private const int Counters = 9;

    private readonly Lock _updateLock = new();
    // By network namespace (its inode) and ifindex: interface indexes repeat from one namespace to the next.
    private readonly Dictionary<(ulong Netns, int Ifindex), (SafeFileHandle Link, SafeFileHandle Program)> _egress = [];
    private KernelJoinTokens? _joins;
    private bool _disposed;

    private KernelSigner(SafeFileHandle config, SafeFileHandle scratch, SafeFileHandle counters, SafeFileHandle program,
        SafeFileHandle link, string cgroupPath, string parentCgroup, uint slotMask)
    {
        _config = config;
        _scratch = scratch;
        _counters = counters;
        _program = program;
        _link = link;
        CgroupPath = cgroupPath;
        _parentCgroup = parentCgroup;
        _shift = BitOperations.TrailingZeroCount(slotMask);
        _slotValues = (int)(slotMask >> _shift) + 1;
        _listenerValue = _slotValues - 1;
    }

    public string CgroupPath { get; }

    /// <summary>The bpf_link's descriptor (tests hand a duplicate to a child to see what its SIGKILL leaves).</summary>
    internal SafeFileHandle Link => _link;

    /// <summary>The SO_MARK bits for a listener whose SYN/ACKs carry <see cref="KernelSignerConfig.SynAck"/>.</summary>
    public uint ListenerMark => (uint)_listenerValue << _shift;

    /// <summary>The highest SYN slot <see cref="SlotMark"/> takes (the field's values less 0 and the listener's).</summary>
    public int MaxSlot => _listenerValue - 1;

    /// <summary>The SO_MARK bits (within the slot mask) for a socket whose SYN carries <c>Syn[slot]</c>.</summary>
    public uint SlotMark(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slot, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slot, MaxSlot);
        return (uint)slot << _shift;
    }

    /// <summary>
    /// Creates the cgroup v2 child <paramref name="name"/> under this process's own cgroup, loads and attaches the
    /// program (bpf_link: the kernel detaches it when the process dies) and moves the process into the child. On any
    /// failure returns false with a one-line reason and leaves nothing behind.
    /// </summary>
    public static bool TryOpen(string name, KernelSignerConfig config, uint slotMask, out KernelSigner? signer, out string? reason)
    {
        signer = null;
        reason = ValidateMask(slotMask) ?? Validate(config, slotMask);
        if (reason != null)
        {
            reason = "kernel signing: " + reason;
            return false;
        }

        if (!TryOwnCgroup(out string? parent, out reason))
        {
            return false;
        }

        int shift = BitOperations.TrailingZeroCount(slotMask);
        int slotValues = (int)(slotMask >> shift) + 1;
        var handles = new List<SafeFileHandle>();
        string path = Path.Combine(parent!, name);
        bool created = false, moved = false;
        try
        {
            var configMap = BpfNative.CreateMap(BpfNative.MapTypeHash, 4, SigningProgram.ConfigSize(slotValues), 1, BpfNative.NoPrealloc,
                "psel_sign_cfg", out int errno);
            handles.Add(configMap);
            if (configMap.IsInvalid)
            {
                reason = $"kernel signing: BPF_MAP_CREATE (config): {BpfNative.Errno(errno)}";
                return false;
            }

            var scratch = BpfNative.CreateMap(BpfNative.MapTypePercpuArray, 4, Sha256Layout.Size, 1, 0, "psel_sign_tmp", out errno);
            handles.Add(scratch);
            var counters = BpfNative.CreateMap(BpfNative.MapTypePercpuArray, 4, 8, Counters, 0, "psel_sign_cnt", out int errno2);
            handles.Add(counters);
            if (scratch.IsInvalid || counters.IsInvalid)
            {
                reason = $"kernel signing: BPF_MAP_CREATE (per-CPU): {BpfNative.Errno(scratch.IsInvalid ? errno : errno2)}";
                return false;
            }

            int update = BpfNative.UpdateElement(configMap, stackalloc byte[4], ConfigValue(config, slotValues));
            if (update != 0)
            {
                reason = $"kernel signing: BPF_MAP_UPDATE_ELEM (config): {BpfNative.Errno(update)}";
                return false;
            }

            byte[] code = SigningProgram.Emit((int)configMap.DangerousGetHandle(), (int)scratch.DangerousGetHandle(),
                (int)counters.DangerousGetHandle(), slotMask, slotValues - 1);
            var program = BpfNative.LoadProgram(BpfNative.ProgTypeSockOps, code, 0, "psel_sign", out errno, out string log);
            handles.Add(program);
            if (program.IsInvalid)
            {
                reason = $"kernel signing: BPF_PROG_LOAD: {BpfNative.Errno(errno)} verifier: {LastLine(log)}";
                return false;
            }

            try
            {
                Directory.CreateDirectory(path);
                created = true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                reason = $"kernel signing: mkdir {path}: {e.Message}";
                return false;
            }

            using var cgroup = BpfNative.OpenDirectory(path, out errno);
            if (cgroup.IsInvalid)
            {
                reason = $"kernel signing: open {path}: {BpfNative.Errno(errno)}";
                return false;
            }

            var link = BpfNative.CreateLink(program, cgroup, BpfNative.AttachCgroupSockOps, out errno);
            handles.Add(link);
            if (link.IsInvalid)
            {
                reason = $"kernel signing: BPF_LINK_CREATE (cgroup sock_ops): {BpfNative.Errno(errno)}";
                return false;
            }

            if (!TryMoveProcess(path, out reason))
            {
                return false;
            }

            moved = true;
            signer = new KernelSigner(configMap, scratch, counters, program, link, path, parent!, slotMask);
            return true;
        }
        finally
        {
            if (signer == null)
            {
                if (moved)
                {
                    TryMoveProcess(parent!, out _);
                }

                foreach (var handle in handles)
                {
                    handle.Dispose();
                }

                if (created)
                {
                    TryRemove(path);
                }
            }
        }
    }

    /// <summary>Replaces key and options: one update of the config map's one element (the hash map swaps it whole).</summary>
    public void Update(KernelSignerConfig config)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        string? invalid = Validate(config, (uint)(_slotValues - 1) << _shift);
        if (invalid != null)
        {
            throw new ArgumentException(invalid, nameof(config));
        }

        lock (_updateLock)
        {
            int errno = BpfNative.UpdateElement(_config, stackalloc byte[4], ConfigValue(config, _slotValues));
            if (errno != 0)
            {
                throw new IOException($"kernel signing: BPF_MAP_UPDATE_ELEM (config): {BpfNative.Errno(errno)}");
            }
        }
    }

    public KernelSignerCounts ReadCounts()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int cpus = PossibleCpus();
        var values = new byte[8 * cpus];
        Span<long> sums = stackalloc long[Counters];
        Span<byte> key = stackalloc byte[4];
        for (int i = 0; i < Counters; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(key, i);
            if (BpfNative.LookupElement(_counters, key, values) != 0)
            {
                continue;
            }

            for (int c = 0; c < cpus; c++)
            {
                sums[i] += BinaryPrimitives.ReadInt64LittleEndian(values.AsSpan(c * 8));
            }
        }

        return new KernelSignerCounts(sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8]);
    }

    /// <summary>
    /// CPU time the signing program has used and how many callbacks ran it, counted by the kernel only while
    /// <c>kernel.bpf_stats_enabled</c> is 1 (zeros otherwise): the in-kernel cost per connection, for the bench.
    /// </summary>
    public (long RunTimeNs, long RunCount) ReadRunTime()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int errno = BpfNative.ProgramRunTime(_program, out long ns, out long count);
        return errno == 0 ? (ns, count) : (0, 0);
    }

    /// <summary>As <see cref="ReadRunTime"/> for the egress relabelling programs together (they run on every packet leaving their interfaces).</summary>
    public (long RunTimeNs, long RunCount) ReadEgressRunTime()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long ns = 0, count = 0;
        lock (_updateLock)
        {
            // A link's info has no run time: the program's.
            foreach (var (_, program) in _egress.Values)
            {
                if (BpfNative.ProgramRunTime(program, out long n, out long c) == 0)
                {
                    ns += n;
                    count += c;
                }
            }
        }

        return (ns, count);
    }

    /// <summary>
    /// MP_JOINs of connections this proxy holds skip the queue (<see cref="KernelJoinTokens"/>): the egress programs
    /// attached from now on learn the listener's tokens (at most <paramref name="maxTokens"/>; a token that finds the map
    /// full is not stored and closes the foreign match), and the match programs are pinned as <paramref name="name"/> for
    /// the ruleset's <see cref="Rules.InterceptionRulesetOptions.KernelJoinMatch"/> and
    /// <see cref="Rules.InterceptionRulesetOptions.KernelForeignJoinMatch"/>, beside the RST gate
    /// (<see cref="Rules.InterceptionRulesetOptions.KernelRstGate"/>). Before any <see cref="TryAttachEgress"/>. False
    /// with a one-line reason: joins then cross the queue as before.
    /// </summary>
    public bool TryEnableJoins(string name, int maxTokens, out string? reason)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_updateLock)
        {
            if (_egress.Count > 0)
            {
                throw new InvalidOperationException("kernel joins must be enabled before the egress programs are attached");
            }
        }

        if (!KernelJoinTokens.TryCreate(name, maxTokens, _counters, out var joins, out reason))
        {
            return false;
        }

        _joins = joins;
        return true;
    }

    /// <summary>The pinned join match's path (the ruleset's <c>-m bpf --object-pinned</c>), or null without kernel joins.</summary>
    public string? JoinMatchPath => _joins?.PinPath;

    /// <summary>Whether the join map holds <paramref name="token"/> (its 4 bytes as MP_JOIN carries them); false without kernel joins.</summary>
    public bool HoldsJoinToken(ReadOnlySpan<byte> token) => _joins?.Contains(token) ?? false;

    /// <summary>The pinned foreign-join match's path (the ruleset's pass rule), or null without kernel joins.</summary>
    public string? ForeignJoinMatchPath => _joins?.ForeignPinPath;

    /// <summary>The pinned RST gate's path (the ruleset's RST queue rule), or null without kernel joins.</summary>
    public string? RstGatePath => _joins?.RstGatePinPath;

    /// <summary>Opens the RST gate while a SYN is held, closes it when none is; 0 or the errno (0 without kernel joins).</summary>
    public int SetRstGate(bool open) => _joins?.SetRstGate(open) ?? 0;

    /// <summary>Stores an accepted connection's token in the join map: 0 or the errno; 0 without kernel joins.</summary>
    public int AddJoinToken(uint token) => _joins?.Add(token) ?? 0;

    /// <summary>Removes an ended connection's token from the join map.</summary>
    public void RemoveJoinToken(uint token) => _joins?.Remove(token);

    /// <summary>Removes tokens older than <paramref name="age"/> that <paramref name="held"/> does not know (handshakes
    /// that never became connections); how many went.</summary>
    public int SweepJoinTokens(Func<uint, bool> held, TimeSpan age) => _joins?.Sweep(held, age) ?? 0;

    /// <summary>The join map's state (<see cref="JoinMapState"/>), or null without kernel joins.</summary>
    public (ulong Failures, ulong Acknowledged, long LastFailureNs)? ReadJoinMapState() => _joins?.ReadState();

    /// <summary>Opens the foreign-join match while the learning failures stay at <paramref name="failures"/>.</summary>
    public void AcknowledgeJoinMap(ulong failures) => _joins?.Acknowledge(failures);

    /// <summary>Closes the foreign-join match: joins for tokens not in the map cross the queue.</summary>
    public void BlockJoinMap() => _joins?.Acknowledge(JoinMapState.Blocked);

    /// <summary>As <see cref="Cleanup"/> for the join match's pins a killed daemon left (a live daemon's stay).</summary>
    public static IReadOnlyList<string> CleanupJoinPins(string prefix) => KernelJoinTokens.CleanupPrefixed(prefix);

    /// <summary>
    /// Attaches the egress relabelling program (tcx, bpf_link: gone with the process; it touches only packets whose
    /// mark carries slot bits, i.e. this host's marked sockets' segments) to interface
    /// <paramref name="ifindex"/> of the calling thread's network namespace; <paramref name="linkHeaderLength"/> is
    /// the bytes before the IP header there (14 on Ethernet and veth, 0 on a tunnel). True at once for an interface it is
    /// attached to already.
    /// </summary>
    public bool TryAttachEgress(int ifindex, out string? reason, int linkHeaderLength = 14)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_updateLock)
        {
            if (_egress.ContainsKey((CurrentNetns(), ifindex)))
            {
                reason = null;
                return true;
            }
        }

        byte[] code = EgressRelabelProgram.Emit((int)_counters.DangerousGetHandle(), linkHeaderLength, (uint)(_slotValues - 1) << _shift,
            _joins?.Learning(ListenerMark));
        var program = BpfNative.LoadProgram(BpfNative.ProgTypeSchedCls, code, BpfNative.AttachTcxEgress, "psel_relabel", out int errno, out string log);
        if (program.IsInvalid)
        {
            program.Dispose();
            reason = $"kernel signing: BPF_PROG_LOAD (egress relabel): {BpfNative.Errno(errno)} verifier: {LastLine(log)}";
            return false;
        }

        var link = BpfNative.CreateLink(program, ifindex, BpfNative.AttachTcxEgress, out errno);
        if (link.IsInvalid)
        {
            link.Dispose();
            program.Dispose();
            reason = $"kernel signing: BPF_LINK_CREATE (tcx egress, ifindex {ifindex}): {BpfNative.Errno(errno)}";
            return false;
        }

        lock (_updateLock)
        {
            _egress[(CurrentNetns(), ifindex)] = (link, program);
        }

        reason = null;
        return true;
    }

    /// <summary>The interfaces (by index) of the calling thread's network namespace the egress relabelling is attached to.</summary>
    public IReadOnlyCollection<int> EgressInterfaces
    {
        get
        {
            ulong netns = CurrentNetns();
            lock (_updateLock)
            {
                return [.. _egress.Keys.Where(k => k.Netns == netns).Select(k => k.Ifindex)];
            }
        }
    }

    /// <summary>The calling thread's network namespace: the inode /proc/thread-self/ns/net names ("net:[4026531840]").</summary>
    private static ulong CurrentNetns()
    {
        string? target = new FileInfo("/proc/thread-self/ns/net").LinkTarget;
        int open = target?.IndexOf('[', StringComparison.Ordinal) ?? -1;
        return open >= 0 && ulong.TryParse(target.AsSpan(open + 1, target!.Length - open - 2), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out ulong inode) ? inode : 0;
    }

    /// <summary>
    /// Lets go of the egress program of an interface that is gone (the kernel detached it with the device; this closes
    /// the link and program descriptors, so interfaces that come and go, such as PPP sessions, do not pile them up).
    /// </summary>
    public void DetachEgress(int ifindex)
    {
        lock (_updateLock)
        {
            if (_egress.Remove((CurrentNetns(), ifindex), out var egress))
            {
                egress.Link.Dispose();
                egress.Program.Dispose();
            }
        }
    }

    /// <summary>
    /// Removes leftover (empty) cgroups named <paramref name="name"/> under this process's cgroup v2 (or its parent, when
    /// this process is itself in one) after a SIGKILL; returns the paths removed. The program went with the process.
    /// </summary>
    public static IReadOnlyList<string> Cleanup(string name) => CleanupWhere(candidate => candidate == name);

    /// <summary>As <see cref="Cleanup"/> for every cgroup whose name starts with <paramref name="prefix"/> (one per daemon
    /// process: a populated one, a live daemon's, cannot be removed and is left).</summary>
    public static IReadOnlyList<string> CleanupPrefixed(string prefix) =>
        CleanupWhere(candidate => candidate.StartsWith(prefix, StringComparison.Ordinal));

    private static List<string> CleanupWhere(Func<string, bool> named)
    {
        var removed = new List<string>();
        if (!TryOwnCgroup(out string? own, out _))
        {
            return removed;
        }

        foreach (string parent in new[] { own!, Path.GetDirectoryName(own!)! }.Distinct())
        {
            IEnumerable<string> children;
            try
            {
                children = Directory.EnumerateDirectories(parent).ToList();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            foreach (string candidate in children)
            {
                if (candidate != own && named(Path.GetFileName(candidate)) && TryRemove(candidate))
                {
                    removed.Add(candidate);
                }
            }
        }

        return removed;
    }

    /// <summary>How many sock_ops programs are attached to the cgroup at <paramref name="path"/> itself (BPF_PROG_QUERY), -1 on error.</summary>
    public static int AttachedPrograms(string path)
    {
        using var cgroup = BpfNative.OpenDirectory(path, out _);
        return cgroup.IsInvalid ? -1 : BpfNative.QueryPrograms(cgroup, BpfNative.AttachCgroupSockOps, out _);
    }

    /// <summary>Detaches the program and moves the process back; sockets made meanwhile keep the cgroup and stop being signed.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        lock (_updateLock)
        {
            foreach (var (link, program) in _egress.Values)
            {
                link.Dispose();
                program.Dispose();
            }

            _egress.Clear();
        }

        _joins?.Dispose();
        _link.Dispose();
        _program.Dispose();
        _config.Dispose();
        _scratch.Dispose();
        _counters.Dispose();
        TryMoveProcess(_parentCgroup, out _);
        TryRemove(CgroupPath);
    }

    private static string? ValidateMask(uint slotMask)
    {
        if (slotMask == 0 || (slotMask & ReservedMarks) != 0)
        {
            return $"slot mask 0x{slotMask:x} is empty or overlaps the intercept/egress marks 0x{ReservedMarks:x}";
        }

        uint shifted = slotMask >> BitOperations.TrailingZeroCount(slotMask);
        if ((shifted & (shifted + 1)) != 0 || shifted > 0xF || shifted < 3)
        {
            return $"slot mask 0x{slotMask:x} must be 2 to 4 contiguous bits";
        }

        return null;
    }

    private static string? Validate(KernelSignerConfig config, uint slotMask)
    {
        if (config.Key.Length is < 16 or > 64)
        {
            return $"key of {config.Key.Length} bytes (16..64)";
        }

        int maxSlot = (int)(slotMask >> BitOperations.TrailingZeroCount(slotMask)) - 1;
        foreach (var (slot, option) in config.Syn)
        {
            if (slot < 1 || slot > maxSlot)
            {
                return $"SYN slot {slot} outside 1..{maxSlot}";
            }

            if (ValidateOption(option) is { } bad)
            {
                return $"SYN slot {slot}: {bad}";
            }
        }

        return config.SynAck is { } synAck && ValidateOption(synAck) is { } badSynAck ? "SYN/ACK: " + badSynAck : null;
    }

    private static string? ValidateOption(KernelSignedOption option)
    {
        if (option.Prefix.Length is not (6 or 8) || option.TagLength is not (2 or 8))
        {
            return $"prefix of {option.Prefix.Length} bytes and tag of {option.TagLength} (6 or 8, 2 or 8)";
        }

        return option.Prefix[1] != option.Prefix.Length + option.TagLength
            ? $"length byte {option.Prefix[1]} is not {option.Prefix.Length + option.TagLength}"
            : null;
    }

    internal static byte[] ConfigValue(KernelSignerConfig config, int slotValues)
    {
        var value = new byte[SigningProgram.ConfigSize(slotValues)];
        var (inner, outer) = Sha256Block.HmacMidstates(config.Key);
        for (int k = 0; k < 8; k++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(k * 4), inner[k]);
            BinaryPrimitives.WriteUInt32LittleEndian(value.AsSpan(32 + (k * 4)), outer[k]);
        }

        foreach (var (slot, option) in config.Syn)
        {
            WriteEntry(value, slot, option, config.RelabelMptcp);
        }

        if (config.SynAck != null)
        {
            WriteEntry(value, slotValues - 1, config.SynAck, config.RelabelMptcp);
        }

        return value;
    }

    private static void WriteEntry(byte[] value, int slot, KernelSignedOption option, bool relabel)
    {
        var entry = value.AsSpan(SigningProgram.EntriesOffset + (slot * SigningProgram.EntrySize), SigningProgram.EntrySize);
        option.Prefix.CopyTo(entry);
        entry[8] = (byte)option.Prefix.Length;
        entry[9] = (byte)option.TagLength;
        entry[10] = relabel ? (byte)1 : (byte)0;
    }

    /// <summary>This process's cgroup v2 directory (the mount point from mountinfo + the "0::" line of /proc/self/cgroup).</summary>
    /// <summary>Where the hierarchy is mounted when this mount namespace shows none (<c>ip netns exec</c> remounts /sys, and
    /// the cgroup mounts under it go).</summary>
    public const string PrivateCgroup2Mount = "/run/proxysel/cgroup2";

    /// <summary>Mounts the cgroup v2 hierarchy at <see cref="PrivateCgroup2Mount"/> (root only; idempotent through the
    /// mountinfo check before it). The same hierarchy as the host's: only its view was missing.</summary>
    private static bool TryMountCgroup2(out string? mount, out string? reason)
    {
        mount = null;
        try
        {
            Directory.CreateDirectory(PrivateCgroup2Mount);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            reason = $"kernel signing: no cgroup v2 mount, and mkdir {PrivateCgroup2Mount}: {e.Message}";
            return false;
        }

        if (BpfNative.Mount("cgroup2", PrivateCgroup2Mount, "cgroup2", 0, 0) != 0)
        {
            reason = $"kernel signing: no cgroup v2 mount, and mount -t cgroup2 at {PrivateCgroup2Mount}: {BpfNative.Errno(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())}";
            return false;
        }

        mount = PrivateCgroup2Mount;
        reason = null;
        return true;
    }

    private static bool TryOwnCgroup(out string? path, out string? reason)
    {
        path = null;
        string? mount = null;
        foreach (string line in File.ReadLines("/proc/self/mountinfo"))
        {
            // ... mount-point ... - fstype source options
            int dash = line.IndexOf(" - ", StringComparison.Ordinal);
            if (dash > 0 && line.AsSpan(dash + 3).StartsWith("cgroup2 "))
            {
                mount = line.Split(' ')[4];
                break;
            }
        }

        if (mount == null && !TryMountCgroup2(out mount, out reason))
        {
            return false;
        }

        string? own = File.ReadLines("/proc/self/cgroup").FirstOrDefault(l => l.StartsWith("0::", StringComparison.Ordinal));
        if (own == null)
        {
            reason = "kernel signing: this process has no cgroup v2 membership (/proc/self/cgroup has no 0:: line)";
            return false;
        }

        path = Path.TrimEndingDirectorySeparator(mount + own[3..]);
        reason = null;
        return true;
    }

    private static bool TryMoveProcess(string cgroup, out string? reason)
    {
        try
        {
            File.WriteAllText(Path.Combine(cgroup, "cgroup.procs"), Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            reason = null;
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            reason = $"kernel signing: moving the process into {cgroup}: {e.Message}";
            return false;
        }
    }

    private static bool TryRemove(string cgroup)
    {
        try
        {
            Directory.Delete(cgroup);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static int PossibleCpus()
    {
        // "0-1" or "0"; per-CPU lookups return one value per possible CPU.
        string text = File.ReadAllText("/sys/devices/system/cpu/possible").Trim();
        int dash = text.LastIndexOfAny(['-', ',']);
        return int.Parse(dash < 0 ? text : text[(dash + 1)..], CultureInfo.InvariantCulture) + 1;
    }

    private static string LastLine(string log)
    {
        var lines = log.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return lines.Length == 0 ? "(no log)" : lines.Length == 1 ? lines[0] : lines[^2] + " | " + lines[^1];
    }
}
