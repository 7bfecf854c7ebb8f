using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Wire.Tests;

/// <summary>Malformed input only ever yields a WireError: mutated real packets through the whole decode and rewrite path.</summary>
public class RobustnessTests
{
    [FsProperty(MaxTest = 3000)]
    public bool MutatedRealPacket_DecodeAndRewrite_NeverThrow(int pick, int[] positions, byte[] values, int cut, bool truncate)
    {
        var source = VectorPackets.Packets[(int)((uint)pick % (uint)VectorPackets.Packets.Count)].Packet;
        var packet = source.ToArray();
        if (positions is not null && values is { Length: > 0 })
        {
            for (var i = 0; i < positions.Length; i++)
            {
                packet[(int)((uint)positions[i] % (uint)packet.Length)] = values[i % values.Length];
            }
        }

        var length = truncate ? (int)((uint)cut % (uint)(packet.Length + 1)) : packet.Length;
        Decode(packet.AsSpan(0, length));

        var buffer = PacketBuilder.WithSpare(packet, 40);
        ReadOnlySpan<byte> option = [30, 8, 0xF0, 1, 2, 3, 4, 5];
        if (OptionRewriter.TryInsert(buffer, length, option, out var grown) == WireError.None)
        {
            Decode(buffer.AsSpan(0, grown));
            OptionRewriter.TryRemove(buffer, grown, 0, out _);
        }

        OptionRewriter.TryRemove(buffer, length, TcpOptionKind.Mptcp, out _, ChecksumUpdate.Recompute);
        InternetChecksum.TryVerify(buffer.AsSpan(0, length));
        return true;
    }

    [FsProperty(MaxTest = 3000)]
    public bool RandomBytes_Decode_NeverThrows(byte[] bytes, bool ipv6)
    {
        var packet = bytes ?? [];
        if (packet.Length > 0)
        {
            packet[0] = (byte)((ipv6 ? 0x60 : 0x45) | (packet[0] & 0x0F));
        }

        Decode(packet);
        return true;
    }

    private static void Decode(ReadOnlySpan<byte> packet)
    {
        if (TcpPacket.TryParse(packet, out var parsed, out _) != WireError.None)
        {
            return;
        }

        InternetChecksum.VerifyTcp(parsed.Ip);
        Span<byte> written = stackalloc byte[40];
        var reader = parsed.Tcp.GetOptionReader();
        while (reader.MoveNext())
        {
            var bytes = reader.CurrentBytes;
            switch (reader.Current.Kind)
            {
                case TcpOptionKind.Mss: TcpOptionValues.TryReadMss(bytes, out _); break;
                case TcpOptionKind.WindowScale: TcpOptionValues.TryReadWindowScale(bytes, out _); break;
                case TcpOptionKind.SackPermitted: TcpOptionValues.TryReadSackPermitted(bytes); break;
                case TcpOptionKind.Timestamps: TcpOptionValues.TryReadTimestamps(bytes, out _); break;
                case TcpOptionKind.FastOpen: TcpOptionValues.TryReadFastOpen(bytes, out _); break;
                case TcpOptionKind.Md5Signature: TcpOptionValues.TryReadMd5(bytes, out _); break;
                case TcpOptionKind.Authentication: TcpOptionValues.TryReadAuthentication(bytes, out _); break;
                case TcpOptionKind.Sack:
                    if (TcpOptionValues.TryReadSack(bytes, out var sack) == WireError.None)
                    {
                        for (var i = 0; i < sack.Count; i++)
                        {
                            _ = sack[i];
                        }
                    }

                    break;
                case TcpOptionKind.Mptcp:
                    if (MptcpOption.TryParse(bytes, out var mptcp) == WireError.None)
                    {
                        mptcp.TryWrite(written, out _);
                    }

                    break;
            }
        }
    }
}
