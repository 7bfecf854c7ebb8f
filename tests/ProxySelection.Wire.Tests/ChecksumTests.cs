using System.Buffers.Binary;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Wire.Tests;

public class ChecksumTests
{
    [Test]
    public void Compute_Rfc1071Example_MatchesPublishedSum()
    {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2, checksum 220d.
        byte[] data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        Assert.That(InternetChecksum.Fold(InternetChecksum.Accumulate(data)), Is.EqualTo(0xddf2));
        Assert.That(InternetChecksum.Compute(data), Is.EqualTo(0x220d));
    }

    [Test]
    public void Compute_OddLength_PadsWithZero() =>
        Assert.That(InternetChecksum.Compute([0x12, 0x34, 0x56]), Is.EqualTo(InternetChecksum.Compute([0x12, 0x34, 0x56, 0x00])));

    [TestCaseSource(typeof(VectorPackets), nameof(VectorPackets.Cases))]
    public void ComputeTcp_RealPacket_EqualsChecksumOnTheWire(byte[] packet)
    {
        var parsed = TcpPacket.Parse(packet);
        Assert.That(InternetChecksum.ComputeTcp(parsed.Ip), Is.EqualTo(parsed.Tcp.Checksum));
        if (!parsed.Ip.IsIPv6)
        {
            Assert.That(InternetChecksum.ComputeIpv4Header(packet.AsSpan(0, 20)), Is.EqualTo(parsed.Ip.HeaderChecksum));
        }
    }

    [Test]
    public void TryVerify_FlippedPayloadBit_BadChecksum()
    {
        var packet = PacketBuilder.Tcp(true, [], [1, 2, 3]);
        packet[^1] ^= 0x10;
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.BadChecksum));
    }

    [Test]
    public void TryVerify_FlippedIpv4HeaderBit_BadChecksum()
    {
        var packet = PacketBuilder.Tcp(false, [], [1, 2, 3]);
        packet[8] ^= 0x01;
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.BadChecksum));
    }

    [FsProperty(MaxTest = 500)]
    public bool UpdateWord_AnyChange_EqualsRecompute(byte[] data, ushort newWord, int position)
    {
        if (data is null || data.Length < 2)
        {
            return true;
        }

        var even = data.Length & ~1;
        var at = (int)((uint)position % (uint)(even / 2)) * 2;
        var before = InternetChecksum.Compute(data);
        var oldWord = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at));
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(at), newWord);
        var updated = InternetChecksum.Update(before, oldWord, newWord);
        return SameOnesComplement(updated, InternetChecksum.Compute(data));
    }

    [FsProperty(MaxTest = 500)]
    public bool UpdateBytes_AnyChange_EqualsRecompute(byte[] data, byte[] replacement)
    {
        if (data is null || replacement is null || data.Length < 2)
        {
            return true;
        }

        var length = Math.Min(data.Length, replacement.Length) & ~1;
        var before = InternetChecksum.Compute(data);
        var old = data.AsSpan(0, length).ToArray();
        replacement.AsSpan(0, length).CopyTo(data);
        var updated = InternetChecksum.Update(before, old, replacement.AsSpan(0, length));
        return SameOnesComplement(updated, InternetChecksum.Compute(data));
    }

    [FsProperty(MaxTest = 300)]
    public bool UpdateUInt32_SequenceNumberChange_PacketStillVerifies(uint newSequence, bool ipv6)
    {
        var packet = PacketBuilder.Tcp(ipv6, [], [9, 8, 7]);
        var tcpOffset = ipv6 ? 40 : 20;
        var old = BinaryPrimitives.ReadUInt32BigEndian(packet.AsSpan(tcpOffset + 4));
        BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(tcpOffset + 4), newSequence);
        var checksum = BinaryPrimitives.ReadUInt16BigEndian(packet.AsSpan(tcpOffset + 16));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(tcpOffset + 16), InternetChecksum.Update(checksum, old, newSequence));
        return InternetChecksum.TryVerify(packet) == WireError.None;
    }

    // 0x0000 and 0xFFFF are the two ones' complement zeros; RFC 1624 section 3 may yield either.
    private static bool SameOnesComplement(ushort a, ushort b) => a == b || (a is 0 or 0xFFFF && b is 0 or 0xFFFF);
}
