using System.Net;
using System.Text.Json;
using ProxySelection.Wire;

namespace ProxySelection.Wire.Json;

/// <summary>
/// The fields of one TCP packet as JSON: IP header, TCP header and every option in wire order. MPTCP options carry
/// <c>fields</c> named as tshark 4.0 names them (tcp.options.mptcp.* without the prefix, same value formats: see
/// tests/vectors/README.md), <c>raw</c> (the option bytes) and <c>analysis</c> (values tshark derives, under its names).
/// </summary>
public static class PacketJson
{
    /// <summary>Writes the packet's properties into an open object; stops at the first malformed part.</summary>
    public static WireError TryWrite(Utf8JsonWriter w, ReadOnlySpan<byte> packet, out int errorOffset)
    {
        var error = TcpPacket.TryParse(packet, out var parsed, out errorOffset);
        if (error != WireError.None)
        {
            return error;
        }

        var ip = parsed.Ip;
        var tcp = parsed.Tcp;
        w.WriteNumber("ip_version", ip.Version);
        w.WriteString("src", new IPAddress(ip.SourceAddress).ToString());
        w.WriteString("dst", new IPAddress(ip.DestinationAddress).ToString());
        WriteIp(w, ip);
        w.WriteNumber("sport", tcp.SourcePort);
        w.WriteNumber("dport", tcp.DestinationPort);
        w.WriteNumber("seq", tcp.SequenceNumber);
        w.WriteNumber("ack", tcp.AcknowledgmentNumber);
        w.WriteString("tcp_flags", FlagLetters(tcp.Flags));
        w.WriteNumber("tcp_flags_value", (int)tcp.Flags);
        w.WriteNumber("tcp_header_length", tcp.HeaderLength);
        w.WriteNumber("window", tcp.Window);
        w.WriteString("tcp_checksum", $"0x{tcp.Checksum:x4}");
        w.WriteString("tcp_checksum_status", InternetChecksum.VerifyTcp(ip) ? "Checksum Status: Good" : "Checksum Status: Bad");
        w.WriteNumber("urgent_pointer", tcp.UrgentPointer);
        w.WriteNumber("payload_len", tcp.Payload.Length);
        w.WriteStartArray("options");
        error = TryWriteOptions(w, tcp.Options, parsed.OptionsOffset, out errorOffset);
        if (error != WireError.None)
        {
            return error;
        }

        w.WriteEndArray();
        return WireError.None;
    }

    private static void WriteIp(Utf8JsonWriter w, IpPacket ip)
    {
        w.WriteStartObject("ip");
        if (ip.IsIPv6)
        {
            w.WriteNumber("traffic_class", ip.TrafficClass);
            w.WriteNumber("flow_label", ip.FlowLabel);
            w.WriteNumber("payload_length", ip.PayloadLength);
            w.WriteNumber("next_header", ip.Packet[6]);
            w.WriteNumber("hop_limit", ip.HopLimit);
            w.WriteNumber("extension_headers", ip.ExtensionHeaderCount);
        }
        else
        {
            w.WriteNumber("header_length", ip.HeaderLength);
            w.WriteNumber("dscp", ip.TrafficClass >> 2);
            w.WriteNumber("ecn", ip.TrafficClass & 0x3);
            w.WriteNumber("total_length", ip.TotalLength);
            w.WriteNumber("id", ip.Identification);
            w.WriteNumber("flags", ip.Flags);
            w.WriteNumber("fragment_offset", ip.FragmentOffset);
            w.WriteNumber("ttl", ip.HopLimit);
            w.WriteString("checksum", $"0x{ip.HeaderChecksum:x4}");
            w.WriteString("checksum_status", InternetChecksum.VerifyIpv4Header(ip.Packet[..ip.HeaderLength]) ? "Good" : "Bad");
        }

        w.WriteNumber("protocol", ip.Protocol);
        w.WriteEndObject();
    }

    /// <summary>Letters in the order F S R P A U E C, as the vector records write them.</summary>
    private static string FlagLetters(TcpFlags flags)
    {
        Span<char> letters = stackalloc char[8];
        int n = 0;
        foreach (var (flag, letter) in FlagOrder)
        {
            if ((flags & flag) != 0)
            {
                letters[n++] = letter;
            }
        }

        return new string(letters[..n]);
    }

    private static readonly (TcpFlags Flag, char Letter)[] FlagOrder =
    [
        (TcpFlags.Fin, 'F'), (TcpFlags.Syn, 'S'), (TcpFlags.Rst, 'R'), (TcpFlags.Psh, 'P'),
        (TcpFlags.Ack, 'A'), (TcpFlags.Urg, 'U'), (TcpFlags.Ece, 'E'), (TcpFlags.Cwr, 'C'),
    ];

    private static WireError TryWriteOptions(Utf8JsonWriter w, ReadOnlySpan<byte> options, int optionsOffset, out int errorOffset)
    {
        errorOffset = 0;
        var reader = new TcpOptionReader(options);
        while (reader.MoveNext())
        {
            var option = reader.Current;
            var bytes = reader.CurrentBytes;
            var error = TryWriteOption(w, option.Kind, bytes);
            if (error != WireError.None)
            {
                // Length problems point at the length byte, anything else at the kind.
                errorOffset = optionsOffset + option.Offset + (error is WireError.BadOptionLength or WireError.BadMptcpLength ? 1 : 0);
                return error;
            }
        }

        if (reader.Error != WireError.None)
        {
            errorOffset = optionsOffset + reader.ErrorOffset;
            return reader.Error;
        }

        return WireError.None;
    }

    private static WireError TryWriteOption(Utf8JsonWriter w, TcpOptionKind kind, ReadOnlySpan<byte> bytes)
    {
        WireError error;
        switch (kind)
        {
            case TcpOptionKind.EndOfList:
            case TcpOptionKind.Nop:
                w.WriteStartObject();
                w.WriteNumber("kind", (int)kind);
                w.WriteEndObject();
                return WireError.None;

            case TcpOptionKind.Mss:
                error = TcpOptionValues.TryReadMss(bytes, out var mss);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteNumber("mss", mss);
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.WindowScale:
                error = TcpOptionValues.TryReadWindowScale(bytes, out var shift);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteNumber("shift", shift);
                    // tshark caps the multiplier at 2^14 (RFC 7323 section 2.3).
                    w.WriteNumber("multiplier", 1 << Math.Min((int)shift, TcpOptionValues.MaxWindowScaleShift));
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.SackPermitted:
                error = TcpOptionValues.TryReadSackPermitted(bytes);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.Sack:
                error = TcpOptionValues.TryReadSack(bytes, out var sack);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteStartArray("blocks");
                    for (int i = 0; i < sack.Count; i++)
                    {
                        w.WriteStartArray();
                        w.WriteNumberValue(sack[i].Left);
                        w.WriteNumberValue(sack[i].Right);
                        w.WriteEndArray();
                    }

                    w.WriteEndArray();
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.Timestamps:
                error = TcpOptionValues.TryReadTimestamps(bytes, out var ts);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteNumber("tsval", ts.Value);
                    w.WriteNumber("tsecr", ts.EchoReply);
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.Md5Signature:
                error = TcpOptionValues.TryReadMd5(bytes, out var digest);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteString("digest", Convert.ToHexStringLower(digest));
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.Authentication:
                error = TcpOptionValues.TryReadAuthentication(bytes, out var ao);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteNumber("keyid", ao.KeyId);
                    w.WriteNumber("rnextkeyid", ao.NextKeyId);
                    w.WriteString("mac", Convert.ToHexStringLower(ao.Mac));
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.FastOpen:
                error = TcpOptionValues.TryReadFastOpen(bytes, out var cookie);
                if (error == WireError.None)
                {
                    StartOption(w, bytes);
                    w.WriteString("cookie", Convert.ToHexStringLower(cookie));
                    w.WriteEndObject();
                }

                return error;

            case TcpOptionKind.Mptcp:
                return MptcpJson.TryWrite(w, bytes);

            default:
                StartOption(w, bytes);
                w.WriteString("data", Convert.ToHexStringLower(bytes[2..]));
                w.WriteEndObject();
                return WireError.None;
        }
    }

    private static void StartOption(Utf8JsonWriter w, ReadOnlySpan<byte> bytes)
    {
        w.WriteStartObject();
        w.WriteNumber("kind", bytes[0]);
        w.WriteNumber("length", bytes[1]);
    }
}
