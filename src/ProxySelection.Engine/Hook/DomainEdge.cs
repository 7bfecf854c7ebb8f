using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine.Hook;

/// <summary>
/// The operator domain's edge (spec §7.12): SYNs and SYN/ACKs leaving by an edge interface lose every MP_PROXY option
/// (kind 30, subtype 0xF, experiment 0xA5, any version), so no Claim's proxy id reaches a server beyond the domain;
/// everything else in the segment stays byte for byte (the option space is closed up, the checksums recomputed).
/// </summary>
internal sealed partial class DomainEdge
{
    private readonly HashSet<string> _names;
    private readonly ConcurrentDictionary<uint, bool> _byIndex = new();

    public DomainEdge(IReadOnlyList<string> interfaces)
    {
        _names = new HashSet<string>(interfaces, StringComparer.Ordinal);
    }

    public bool Enabled => _names.Count > 0;

    /// <summary>Whether the interface with index <paramref name="index"/> is an edge one (its name is read once per index).</summary>
    public bool IsEdge(uint index) =>
        index != 0 && _names.Count > 0 && _byIndex.GetOrAdd(index, static (i, names) => names.Contains(NameOf(i) ?? ""), _names);

    /// <summary>
    /// <paramref name="packet"/> without its MP_PROXY options in <paramref name="rewritten"/> (its first
    /// <paramref name="length"/> bytes); returns how many were removed (0: nothing to change, <paramref name="rewritten"/> null).
    /// </summary>
    public static int Strip(ReadOnlySpan<byte> packet, out byte[]? rewritten, out int length)
    {
        rewritten = null;
        length = packet.Length;
        int removed = 0;
        while (true)
        {
            ReadOnlySpan<byte> current = rewritten is null ? packet : rewritten.AsSpan(0, length);
            if (TcpPacket.TryParse(current, out var parsed) != WireError.None)
            {
                return removed;
            }

            int offset = -1;
            var options = parsed.Tcp.Options;
            foreach (var option in new TcpOptionReader(options))
            {
                if (IsMpProxy(option.Slice(options)))
                {
                    offset = option.Offset;
                    break;
                }
            }

            if (offset < 0)
            {
                return removed;
            }

            rewritten ??= packet.ToArray();
            if (OptionRewriter.TryRemove(rewritten, length, offset, out int shorter, ChecksumUpdate.Recompute) != WireError.None)
            {
                // Cannot be closed up (should not happen for a parsed option): the segment goes as it came.
                rewritten = null;
                length = packet.Length;
                return 0;
            }

            length = shorter;
            removed++;
        }
    }

    /// <summary>Any version: a future MP_PROXY carries the same proxy id, and the edge strips what it cannot read too.</summary>
    // MP_PROXY, or the kernel signer's placeholder for it (kind 253 with MP_PROXY's own next bytes, relabelled to kind 30
    // on the interface's egress, after this hook): whatever would leave as MP_PROXY goes.
    private static bool IsMpProxy(ReadOnlySpan<byte> option) =>
        option.Length >= MpProxyOption.PresenceLength
        && (option[0] == MpProxyOption.Kind || option[0] == Interception.Bpf.KernelSigner.PlaceholderKind)
        && option[2] >> 4 == MpProxyOption.Subtype
        && option[3] == MpProxyOption.ExperimentId;

    private static unsafe string? NameOf(uint index)
    {
        byte* name = stackalloc byte[16]; // IF_NAMESIZE
        return if_indextoname(index, name) is null ? null : Marshal.PtrToStringUTF8((nint)name);
    }

    [LibraryImport("libc", SetLastError = false)]
    private static unsafe partial byte* if_indextoname(uint index, byte* name);
}
