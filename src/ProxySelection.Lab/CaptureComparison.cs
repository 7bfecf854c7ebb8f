using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using ProxySelection.Wire;

namespace ProxySelection.Lab;

/// <summary>One captured TCP segment: addresses, flags, capture time and the segment's bytes (TCP header and payload).</summary>
public sealed record CapturedSegment(string Source, string Destination, TcpFlags Flags, long TimestampMicroseconds, byte[] Bytes)
{
    /// <summary>What a router must not change: both addresses and the whole TCP segment (TTL/hop limit and the IPv4
    /// header checksum are the only IP fields left out, as a router legitimately rewrites them), but for the TCP
    /// checksum: a capture shows it unfinished where the kernel leaves it to the device (checksum offload, a segment
    /// split from a coalesced one), and the receiver checks it anyway.</summary>
    public string Identity => Bytes.Length < 18
        ? $"{Source}>{Destination} {Convert.ToHexString(Bytes)}"
        : $"{Source}>{Destination} {Convert.ToHexString(Bytes, 0, 16)}....{Convert.ToHexString(Bytes, 18, Bytes.Length - 18)}";

    /// <summary>Ports, sequence, acknowledgement, data offset and flags: which segment this is, not what it carries.</summary>
    public string Key => $"{Source}>{Destination} {Convert.ToHexString(Bytes, 0, Math.Min(14, Bytes.Length))}";

    public ushort SourcePort => (ushort)((Bytes[0] << 8) | Bytes[1]);

    public ushort DestinationPort => (ushort)((Bytes[2] << 8) | Bytes[3]);

    /// <summary>The connection, the same for both directions: lower endpoint first.</summary>
    public string Flow
    {
        get
        {
            var a = $"{Source}:{SourcePort.ToString(CultureInfo.InvariantCulture)}";
            var b = $"{Destination}:{DestinationPort.ToString(CultureInfo.InvariantCulture)}";
            return string.CompareOrdinal(a, b) < 0 ? $"{a}-{b}" : $"{b}-{a}";
        }
    }

    /// <summary>Bytes after the TCP header (data offset in the header's 13th byte).</summary>
    public int PayloadLength => Bytes.Length - ((Bytes[12] >> 4) * 4);

    public bool IsSyn => (Flags & (TcpFlags.Syn | TcpFlags.Ack)) == TcpFlags.Syn;

    public bool IsSynAck => (Flags & (TcpFlags.Syn | TcpFlags.Ack)) == (TcpFlags.Syn | TcpFlags.Ack);
}

/// <summary>How the segments on the two sides of a router compare, per direction of one endpoint's traffic.</summary>
/// <param name="Changed">Segments whose key is on both sides with bytes each side lacks (a substitution): never a capture artefact.</param>
/// <param name="Missing">Segments seen on one side only, with nothing under their key on the other side.</param>
/// <param name="Before">Segments counted on the first side.</param>
/// <param name="After">Segments counted on the second side.</param>
/// <param name="Detail">What differed, for a report.</param>
/// <param name="Superseded">Segments seen on one side only whose key crossed in another form the other side also
/// holds (a drop inside the hop followed by a retransmission, a window update tcpdump lost): not counted as missing.</param>
public sealed record SideComparison(int Changed, int Missing, int Before, int After, string Detail, int Superseded = 0)
{
    /// <summary>Nothing changed and at most <paramref name="tolerance"/> segments are missing (capture losses).</summary>
    public bool Identical(int tolerance) => Changed == 0 && Missing <= tolerance;
}

/// <summary>
/// Reads TCP segments out of captures so the two sides of a router can be compared byte for byte (design §2,
/// untouched pass-through). Used by the integration tests and <c>proxysel interop</c>.
/// </summary>
public static partial class CaptureComparison
{
    /// <summary>Segments per direction a capture may lose at its stop without a comparison failing.</summary>
    public const int MaxCaptureLoss = 3;

    public static List<CapturedSegment> Segments(IEnumerable<PcapPacket> packets, Func<CapturedSegment, bool>? where = null)
    {
        ArgumentNullException.ThrowIfNull(packets);
        var segments = new List<CapturedSegment>();
        foreach (var packet in packets)
        {
            if (IpPacket.TryParse(packet.IpPacket.Span, out var ip) != WireError.None
                || TcpHeader.TryParse(ip.Payload, out var tcp) != WireError.None)
            {
                continue;
            }

            var segment = new CapturedSegment(
                new IPAddress(ip.SourceAddress).ToString(),
                new IPAddress(ip.DestinationAddress).ToString(),
                tcp.Flags,
                packet.TimestampMicroseconds,
                ip.Payload.ToArray());
            if (where is null || where(segment))
            {
                segments.Add(segment);
            }
        }

        return segments;
    }

    /// <summary>
    /// Compares <paramref name="before"/> and <paramref name="after"/> for the segments <paramref name="mine"/> selects
    /// (one direction of some traffic): which segments seen on both sides differ, and how many appear on one side only.
    /// </summary>
    public static SideComparison Compare(IReadOnlyList<CapturedSegment> before, IReadOnlyList<CapturedSegment> after, Func<CapturedSegment, bool> mine)
    {
        ArgumentNullException.ThrowIfNull(before);
        ArgumentNullException.ThrowIfNull(after);
        ArgumentNullException.ThrowIfNull(mine);
        var one = before.Where(mine).ToList();
        var two = after.Where(mine).ToList();
        var oneIds = one.Select(s => s.Identity).ToHashSet();
        var twoIds = two.Select(s => s.Identity).ToHashSet();
        var oneKeys = one.ToLookup(s => s.Key);
        var twoKeys = two.ToLookup(s => s.Key);
        // A change is a substitution: under one key (ports, sequence, acknowledgement, flags) each side holds bytes the
        // other side lacks. Bytes on one side only, while every form the other side holds under that key is matched, are
        // a loss: a retransmission after a drop inside the hop (the original and the retransmission differ in their
        // timestamp) is seen twice before the hop and once after it; a router may drop, it may not rewrite.
        // Pure ACKs repeat a key with other bytes (a window update, a later timestamp): when tcpdump loses one of a pair
        // on each side the two look substituted, so an unmatched pure ACK counts as lost, never as changed.
        // A segment and a coalesced one that starts with it (GRO on one side of the hop, or a split on the other) share
        // the key: the same header but for the checksum, and one payload the start of the other. A router may coalesce
        // and split; such a pair is not a change, and the bytes of both still have to match.
        static bool Comparable(CapturedSegment s) => s.PayloadLength > 0 || (s.Flags & ~TcpFlags.Ack) != 0;
        static bool Unmatched(IEnumerable<CapturedSegment> sameKey, HashSet<string> otherIds) => sameKey.Any(s => !otherIds.Contains(s.Identity));
        bool Substituted(CapturedSegment s, HashSet<string> otherIds, ILookup<string, CapturedSegment> otherKeys, HashSet<string> ownIds) =>
            Comparable(s) && !otherIds.Contains(s.Identity) && otherKeys.Contains(s.Key) && Unmatched(otherKeys[s.Key], ownIds)
            && !otherKeys[s.Key].Any(o => Resegmented(s, o) || Retransmitted(s, o));
        var changed = one.Where(s => Substituted(s, twoIds, twoKeys, oneIds))
            .Concat(two.Where(s => Substituted(s, oneIds, oneKeys, twoIds)))
            .Select(s => s.Identity).ToList();
        var lostAfter = one.Where(s => !twoKeys.Contains(s.Key)).ToList();
        var lostBefore = two.Where(s => !oneKeys.Contains(s.Key)).ToList();
        int superseded = one.Count(s => !twoIds.Contains(s.Identity) && twoKeys.Contains(s.Key) && !Substituted(s, twoIds, twoKeys, oneIds))
            + two.Count(s => !oneIds.Contains(s.Identity) && oneKeys.Contains(s.Key) && !Substituted(s, oneIds, oneKeys, twoIds));
        var detail = string.Join("\n", changed.Take(5).Select(c => $"changed: {Abbreviate(c)}")
            .Concat(lostAfter.Take(5).Select(s => $"after: missing #{one.IndexOf(s)} {Abbreviate(s.Identity)}"))
            .Concat(lostBefore.Take(5).Select(s => $"before: missing #{two.IndexOf(s)} {Abbreviate(s.Identity)}")));
        return new SideComparison(changed.Count, lostAfter.Count + lostBefore.Count, one.Count, two.Count, detail, superseded);
    }

    /// <summary>
    /// Whether <paramref name="a"/> and <paramref name="b"/> carry the same bytes at the same sequence and differ only
    /// where a sender's retransmission differs from its original: the timestamp option's values, the window and the
    /// checksum. Seen once on each side of a hop, the original was dropped inside it and tcpdump lost the
    /// retransmission's copy on the first side (a capture that loses hundreds of segments per run does); a rewrite of the
    /// payload or of any other option is still a change.
    /// </summary>
    public static bool Retransmitted(CapturedSegment a, CapturedSegment b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        int header = (a.Bytes[12] >> 4) * 4;
        if (header < 20 || a.Bytes.Length != b.Bytes.Length || a.Bytes.Length < header || a.PayloadLength == 0)
        {
            return false;
        }

        int timestamp = TimestampValueOffset(a.Bytes, header);
        if (timestamp < 0 || timestamp != TimestampValueOffset(b.Bytes, header))
        {
            return false;
        }

        for (int i = 0; i < a.Bytes.Length; i++)
        {
            bool mayDiffer = i is 14 or 15 or 16 or 17 || (i >= timestamp && i < timestamp + 8);
            if (!mayDiffer && a.Bytes[i] != b.Bytes[i])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The offset of the timestamp option's 8 value bytes in a TCP header, or -1.</summary>
    private static int TimestampValueOffset(byte[] bytes, int header)
    {
        int at = 20;
        while (at < header)
        {
            byte kind = bytes[at];
            if (kind == 0)
            {
                return -1;
            }

            if (kind == 1)
            {
                at++;
                continue;
            }

            if (at + 1 >= header || bytes[at + 1] < 2)
            {
                return -1;
            }

            if (kind == 8 && bytes[at + 1] == 10 && at + 10 <= header)
            {
                return at + 2;
            }

            at += bytes[at + 1];
        }

        return -1;
    }

    /// <summary>Whether <paramref name="a"/> and <paramref name="b"/> are one segment and a coalesced one that begins with
    /// it: equal headers but for the checksum, and the shorter payload the start of the longer.</summary>
    public static bool Resegmented(CapturedSegment a, CapturedSegment b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        int header = (a.Bytes[12] >> 4) * 4;
        if (header < 20 || header != (b.Bytes[12] >> 4) * 4 || a.PayloadLength == b.PayloadLength
            || a.Bytes.Length < header || b.Bytes.Length < header)
        {
            return false;
        }

        for (int i = 0; i < header; i++)
        {
            if (i is not (16 or 17) && a.Bytes[i] != b.Bytes[i])
            {
                return false;
            }
        }

        var (shorter, longer) = a.PayloadLength < b.PayloadLength ? (a, b) : (b, a);
        return shorter.Bytes.AsSpan(header).SequenceEqual(longer.Bytes.AsSpan(header, shorter.PayloadLength));
    }

    /// <summary>
    /// Packets tcpdump says it lost: dropped by the kernel, plus received by the filter but not written (at the stop).
    /// </summary>
    public static int ReportedLoss(PacketCapture capture)
    {
        ArgumentNullException.ThrowIfNull(capture);
        int Read(string what)
        {
            var match = Regex.Match(capture.Log, $@"(\d+) packets? {what}");
            return match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
        }

        return Read("dropped by kernel") + Math.Max(0, Read("received by filter") - Read("captured"));
    }

    /// <summary>
    /// Lets the closing segments reach every interface, then stops all <paramref name="captures"/> together (a long quiet
    /// period: on SIGINT tcpdump drops what it was handed but had not written, see <see cref="PacketCapture.StopAsync"/>).
    /// </summary>
    public static async Task<IReadOnlyList<IReadOnlyList<PcapPacket>>> StopAllAsync(IReadOnlyList<PacketCapture> captures, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(captures);
        await Task.Delay(TimeSpan.FromMilliseconds(500)).ConfigureAwait(false);
        var stops = captures.Select(c => c.StopAsync(TimeSpan.FromSeconds(1))).ToList();
        return await Task.WhenAll(stops).WaitAsync(timeout).ConfigureAwait(false);
    }

    private static string Abbreviate(string identity) => identity.Length > 140 ? identity[..140] + "…" : identity;
}
