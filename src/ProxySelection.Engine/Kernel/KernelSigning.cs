using ProxySelection.Interception.Bpf;
using ProxySelection.Negotiation;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Kernel;

/// <summary>
/// The engine's side of <see cref="KernelSigner"/>: which messages the kernel writes for this proxy (spec §7.3.2–7.3.3:
/// the Claim on the listener's SYN/ACKs, the Claim or Upgrade on an upstream leg's SYN), in step with the key ring (the
/// ring stays the one truth: <see cref="Refresh"/> pushes a rotation). Probes stay on the egress queue: their SYN's ISN
/// is what tells the probe's own answer from a forged one (spec §7.5.2), and the hook reads it there.
/// </summary>
public sealed partial class KernelSigning : IDisposable
{
    /// <summary>The SYN slot of an upstream leg.</summary>
    public const int UpstreamSlot = 1;

    /// <summary>The SO_MARK field the slots take (bits 8–10): clear of the intercept, egress and re-sign marks.</summary>
    public const uint SlotMask = 0x700;

    private readonly KernelSigner _signer;
    private readonly NegotiatorOptions _negotiation;
    private readonly MpProxyKeyRing _ring;
    private readonly Lock _lock = new();
    private (byte Priority, byte KeyId, byte[] Key) _applied;
    private readonly Lock _egressLock = new(); // not _lock: a slow interface listing must not hold up a key refresh
    private readonly HashSet<int> _refused = []; // reported once, retried on every sync

    private KernelSigning(KernelSigner signer, NegotiatorOptions negotiation, MpProxyKeyRing ring, (byte, byte, byte[]) applied)
    {
        _signer = signer;
        _negotiation = negotiation;
        _ring = ring;
        _applied = applied;
    }

    /// <summary>SO_MARK bits of a transparent listener whose SYN/ACKs carry the Claim.</summary>
    public uint ListenerMark => _signer.ListenerMark;

    /// <summary>SO_MARK bits of an upstream leg whose SYN carries the holder's Claim (or Upgrade).</summary>
    public uint UpstreamMark => _signer.SlotMark(UpstreamSlot);

    public string CgroupPath => _signer.CgroupPath;

    /// <summary>The join map's bound (<see cref="TryEnableJoins"/>): as many as the fast path's sets hold. A token that finds
    /// it full is not stored: its joins, and foreign ones while the map is not whole, cross the queue as before.</summary>
    public const int JoinTokenCapacity = 65536;

    /// <summary>
    /// Opens the kernel signer for an explicit-mode proxy, or returns null and why (the engine then signs through the
    /// egress queue as before: fail open, never unsigned).
    /// </summary>
    public static KernelSigning? TryOpen(string name, NegotiatorOptions negotiation, MpProxyKeyRing ring, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(negotiation);
        ArgumentNullException.ThrowIfNull(ring);
        var current = Current(negotiation, ring);
        if (!KernelSigner.TryOpen(name, Config(negotiation, current), SlotMask, out var signer, out reason) || signer is null)
        {
            return null;
        }

        return new KernelSigning(signer, negotiation, ring, current);
    }

    /// <summary>
    /// Pushes a key rotation or a reloaded priority to the kernel (one map update); true when something had changed. The
    /// ring and the options stay the one truth; the engine calls this about once a second.
    /// </summary>
    public bool Refresh()
    {
        var current = Current(_negotiation, _ring);
        lock (_lock)
        {
            if (current.Priority == _applied.Priority && current.KeyId == _applied.KeyId && current.Key.AsSpan().SequenceEqual(_applied.Key))
            {
                return false;
            }

            _signer.Update(Config(_negotiation, current));
            _applied = current;
            return true;
        }
    }

    public KernelSignerCounts ReadCounts() => _signer.ReadCounts();

    /// <summary>
    /// Joins of held connections taken in the kernel (<see cref="Engine.ProxyEngineOptions.KernelJoins"/>): before
    /// <see cref="AttachEgress"/>. Null, or why not (joins then cross the queue as before).
    /// </summary>
    public string? TryEnableJoins(string name) =>
        _signer.TryEnableJoins(name, JoinTokenCapacity, out string? reason) ? null : reason ?? "unknown";

    /// <summary>The pinned join match for the ruleset, or null.</summary>
    public string? JoinMatchPath => _signer.JoinMatchPath;

    /// <summary>Whether the kernel's join map holds <paramref name="token"/> (tests).</summary>
    public bool HoldsJoinToken(uint token)
    {
        Span<byte> bytes = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, token);
        return _signer.HoldsJoinToken(bytes);
    }

    /// <summary>
    /// Attaches the egress relabelling to every interface of the namespace but the loopback and the domain's edges (an
    /// MPTCP segment's MP_PROXY leaves by them as its placeholder, and the edge hook strips both). Null, or the first
    /// failure: a signer that cannot relabel everywhere is closed by the caller (an MPTCP SYN/ACK would leave unclaimed).
    /// </summary>
    public string? AttachEgress(IReadOnlyList<string> edges)
    {
        var change = SyncEgress(edges);
        return change.Failed.Count > 0 ? change.Failed[0] : null;
    }

    /// <summary>
    /// Follows the namespace's interfaces (the engine calls this about once a second): attaches the relabelling to those
    /// that appeared since (an LTE or PPP link that comes up after the start), lets go of those that are gone. An
    /// interface that refuses the program is reported once and tried again on every call; until it takes it, its MPTCP
    /// SYN/ACKs leave with the placeholder (the connection works, the Claim is not seen).
    /// </summary>
    public EgressChange SyncEgress(IReadOnlyList<string> edges)
    {
        ArgumentNullException.ThrowIfNull(edges);
        lock (_egressLock)
        {
            return SyncEgressLocked(edges);
        }
    }

    private EgressChange SyncEgressLocked(IReadOnlyList<string> edges)
    {
        var attached = new List<string>();
        var failed = new List<string>();
        var present = new HashSet<int>();
        var known = _signer.EgressInterfaces;
        foreach (var nic in System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces())
        {
            if (nic.NetworkInterfaceType == System.Net.NetworkInformation.NetworkInterfaceType.Loopback || edges.Contains(nic.Name))
            {
                continue;
            }

            int index = IfNameToIndex(nic.Name);
            if (index == 0)
            {
                continue; // gone since it was listed
            }

            present.Add(index);
            if (known.Contains(index))
            {
                continue;
            }

            // Layer 2 before the IP header: Ethernet and veth carry 14 bytes, tunnels and PPP none.
            int header = nic.NetworkInterfaceType is System.Net.NetworkInformation.NetworkInterfaceType.Tunnel
                or System.Net.NetworkInformation.NetworkInterfaceType.Ppp ? 0 : 14;
            if (_signer.TryAttachEgress(index, out string? reason, header))
            {
                attached.Add(nic.Name);
                _refused.Remove(index);
            }
            else if (_refused.Add(index))
            {
                failed.Add($"{nic.Name}: {reason}");
            }
        }

        int released = 0;
        foreach (int index in known)
        {
            if (!present.Contains(index))
            {
                _signer.DetachEgress(index);
                released++;
            }
        }

        _refused.IntersectWith(present);
        if (attached.Count > 0 || _refused.Count > 0)
        {
            // SYN/ACKs may have left by it unlearnt (KernelSigning.Joins).
            _egressMissed = true;
        }

        return new EgressChange(attached, failed, released);
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "if_nametoindex", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int IfNameToIndex(string name);

    public void Dispose() => _signer.Dispose();

    private static (byte Priority, byte KeyId, byte[] Key) Current(NegotiatorOptions negotiation, MpProxyKeyRing ring)
    {
        var (keyId, key) = ring.CopyCurrent();
        return (negotiation.Priority, keyId, key);
    }

    /// <summary>What the kernel writes: the option's bytes before the tag (spec §5.2), the short form on SYN/ACKs (the
    /// Claim), the long form with the key id on an upstream leg's SYN (Claim, or Upgrade for an upgrading holder), as
    /// <see cref="SignalCodec.Write"/> places them.</summary>
    internal static KernelSignerConfig Config(NegotiatorOptions negotiation, (byte Priority, byte KeyId, byte[] Key) current)
    {
        var upstream = negotiation.Role == ProxyRole.Downgrade ? MpProxyMessage.Claim : MpProxyMessage.Upgrade;
        return new()
        {
            Key = current.Key,
            // A downgrade listener's SYN/ACKs and an upgrade leg's SYNs are MPTCP: the egress programs relabel them.
            RelabelMptcp = true,
            SynAck = Prefix(MpProxyOption.Short(MpProxyMessage.Claim, current.Priority, negotiation.ProxyId)),
            Syn = new Dictionary<int, KernelSignedOption>
            {
                [UpstreamSlot] = Prefix(MpProxyOption.Long(upstream, current.Priority, negotiation.ProxyId, keyId: current.KeyId)),
            },
        };
    }

    private static KernelSignedOption Prefix(MpProxyOption option)
    {
        Span<byte> bytes = stackalloc byte[MpProxyOption.LongLength];
        int length = MpProxyCodec.Write(bytes, option);
        return new KernelSignedOption(bytes[..(length - option.TagLength)].ToArray(), option.TagLength);
    }
}

/// <summary>What <see cref="KernelSigning.SyncEgress"/> changed: interfaces newly relabelled, those that refused the
/// program (name and cause), and how many gone ones were let go.</summary>
public sealed record EgressChange(IReadOnlyList<string> Attached, IReadOnlyList<string> Failed, int Released);
