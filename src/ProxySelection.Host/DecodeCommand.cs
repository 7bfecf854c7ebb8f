using ProxySelection.Wire.Json;
using System.CommandLine;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host;

/// <summary>
/// <c>proxysel decode --hex &lt;packet&gt; | --pcap &lt;file&gt;</c>: one JSON object per packet (JSON lines). A packet that
/// does not parse gives an error object with the offset and reason, and decoding goes on with the next one.
/// </summary>
internal static class DecodeCommand
{
    public static Command Build(Stream stdout, TextWriter stderr)
    {
        var hex = new Option<string>("--hex")
        {
            Description = "One IP packet (from the IP header on) as hex; whitespace, ':' and a 0x prefix are ignored",
        };
        var pcap = new Option<FileInfo>("--pcap")
        {
            Description = "A classic pcap file (Ethernet, Linux cooked v1/v2 or raw IP link type)",
        };
        var command = new Command("decode", "Print IP, TCP and every TCP/MPTCP option of packets as JSON lines (MPTCP fields named as tshark names them)")
        {
            hex,
            pcap,
        };
        command.Validators.Add(result =>
        {
            bool hasHex = result.GetResult(hex) is not null;
            bool hasPcap = result.GetResult(pcap) is not null;
            if (hasHex == hasPcap)
            {
                result.AddError("decode needs exactly one of --hex or --pcap");
            }
        });
        command.SetAction(result =>
        {
            var hexValue = result.GetValue(hex);
            return hexValue is not null
                ? DecodeHex(hexValue, stdout)
                : DecodePcap(result.GetValue(pcap)!, stdout, stderr);
        });
        return command;
    }

    public static int DecodeHex(string text, Stream stdout)
    {
        using var json = new JsonLines(stdout);
        if (!HexText.TryParse(text, out var packet, out int badIndex))
        {
            json.WriteError(frame: null, fileOffset: null, "InvalidHex", badIndex, $"not a hex string (character {badIndex})");
            return ExitCodes.Usage;
        }

        json.WritePacket(packet, frame: null);
        return ExitCodes.Ok;
    }

    public static int DecodePcap(FileInfo file, Stream stdout, TextWriter stderr)
    {
        try
        {
            // Record by record: a capture of any size needs one frame of memory.
            using var stream = new FileStream(file.FullName, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using var json = new JsonLines(stdout);
            var status = PcapStreamReader.TryOpen(stream, out var reader);
            if (status != PcapStatus.Ok)
            {
                json.WriteError(frame: null, fileOffset: 0, status.ToString(), offset: null, PcapStatusText.Describe(status));
                stderr.WriteLine($"proxysel: {file.FullName}: {PcapStatusText.Describe(status)}");
                return ExitCodes.FileNotReadable;
            }

            using (reader)
            {
                long recordOffset = reader!.Offset;
                while ((status = reader.ReadNext(out var record)) == PcapStatus.Ok)
                {
                    var linkStatus = record.TryGetIpPacket(out var ip);
                    if (linkStatus != PcapStatus.Ok)
                    {
                        json.WriteError(record.Number, record.Offset, linkStatus.ToString(), offset: null, PcapStatusText.Describe(linkStatus));
                    }
                    else
                    {
                        json.WritePacket(ip, record.Number, record.Offset);
                    }

                    recordOffset = reader.Offset;
                }

                if (status != PcapStatus.End)
                {
                    // The record structure is broken: nothing after this point can be found again.
                    json.WriteError(frame: null, recordOffset, status.ToString(), offset: null, PcapStatusText.Describe(status));
                    stderr.WriteLine($"proxysel: {file.FullName}: {PcapStatusText.Describe(status)} at byte {recordOffset}");
                    return ExitCodes.FileNotReadable;
                }
            }

            return ExitCodes.Ok;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            stderr.WriteLine($"proxysel: cannot read {file.FullName}: {e.Message}");
            return ExitCodes.FileNotReadable;
        }
    }
}
