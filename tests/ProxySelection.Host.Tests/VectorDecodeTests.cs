using System.Text.Json;

namespace ProxySelection.Host.Tests;

/// <summary>
/// Every packet of tests/vectors decodes, and every field tshark gave for it (the JSONL record) equals ours.
/// The mapping is one to one (same names, see tests/vectors/README.md) except the generated tshark_analysis items
/// listed in <see cref="UnmappableAnalysis"/>.
/// </summary>
public class VectorDecodeTests
{
    /// <summary>Record keys that describe the capture, not the packet.</summary>
    private static readonly HashSet<string> NotPacketFields = ["id", "scenario", "pcap", "frame", "desc", "note", "hex", "options"];

    /// <summary>
    /// tshark_analysis items a single-packet decoder cannot give, and why. Everything else in tshark_analysis is
    /// compared against our <c>analysis</c> object.
    /// </summary>
    internal static readonly Dictionary<string, string> UnmappableAnalysis = new(StringComparer.Ordinal)
    {
        ["mptcp.ack"] = "a 4-byte data ACK is expanded to 64 bits from the peer's IDSN, which is connection state; " +
                        "8-byte data ACKs are compared (equal to rawdataack)",
        ["mptcp.dss.dsn"] = "a 4-byte DSN is expanded to 64 bits from connection state; 8-byte DSNs are compared (equal to rawdataseqno)",
        ["mptcp.connection.unsupported_algorithm"] = "tshark 4.0.17 adds it wrongly when flag C is set (H is set too); see README quirks",
    };

    [TestCaseSource(typeof(VectorFiles), nameof(VectorFiles.RecordCases))]
    public void Decode_VectorPacket_EveryTsharkFieldEqualsOurs(VectorRecord? record)
    {
        if (record is null)
        {
            VectorFiles.RequireDirectory();
            return;
        }

        var ours = Decoded.Packet(record.Packet);
        Assert.That(ours.TryGetProperty("error", out _), Is.False, ours.GetRawText());
        var mismatches = new List<string>();
        foreach (var property in record.Json.EnumerateObject().Where(p => !NotPacketFields.Contains(p.Name)))
        {
            Compare(mismatches, property.Name, property.Value, ours);
        }

        var expectedOptions = record.Json.GetProperty("options").EnumerateArray().ToList();
        var ourOptions = ours.GetProperty("options").EnumerateArray().ToList();
        Assert.That(ourOptions, Has.Count.EqualTo(expectedOptions.Count), ours.GetRawText());
        for (int i = 0; i < expectedOptions.Count; i++)
        {
            CompareOption(mismatches, $"options[{i}]", expectedOptions[i], ourOptions[i]);
        }

        Assert.That(mismatches, Is.Empty, ours.GetRawText());
    }

    [TestCaseSource(typeof(VectorFiles), nameof(VectorFiles.RecordCases))]
    public void Decode_VectorPacket_NoOurFieldIsMissingFromTshark(VectorRecord? record)
    {
        if (record is null)
        {
            VectorFiles.RequireDirectory();
            return;
        }

        // The reverse direction for MPTCP: we print nothing tshark does not, except the DSS checksum it cannot decode.
        var ours = Decoded.Packet(record.Packet);
        var expectedOptions = record.Json.GetProperty("options").EnumerateArray().ToList();
        var ourOptions = ours.GetProperty("options").EnumerateArray().ToList();
        var extra = new List<string>();
        for (int i = 0; i < Math.Min(expectedOptions.Count, ourOptions.Count); i++)
        {
            if (!ourOptions[i].TryGetProperty("fields", out var fields))
            {
                continue;
            }

            var theirs = expectedOptions[i].GetProperty("fields");
            expectedOptions[i].TryGetProperty("fields_not_from_tshark", out var notFromTshark);
            foreach (var field in fields.EnumerateObject())
            {
                bool known = theirs.TryGetProperty(field.Name, out _)
                             || (notFromTshark.ValueKind == JsonValueKind.Object && notFromTshark.TryGetProperty(field.Name, out _));
                if (!known)
                {
                    extra.Add($"options[{i}].fields.{field.Name}");
                }
            }
        }

        Assert.That(extra, Is.Empty, ours.GetRawText());
    }

    private static void CompareOption(List<string> mismatches, string path, JsonElement expected, JsonElement ours)
    {
        foreach (var property in expected.EnumerateObject())
        {
            switch (property.Name)
            {
                case "fields":
                    foreach (var field in property.Value.EnumerateObject())
                    {
                        Compare(mismatches, $"{path}.fields.{field.Name}", field.Value, ours, "fields", field.Name);
                    }

                    break;
                case "fields_not_from_tshark":
                    foreach (var field in property.Value.EnumerateObject())
                    {
                        Compare(mismatches, $"{path}.fields.{field.Name}", field.Value, ours, "fields", field.Name);
                    }

                    break;
                case "tshark_analysis":
                    foreach (var item in property.Value.EnumerateObject())
                    {
                        if (IsUnmappable(item.Name, expected))
                        {
                            continue;
                        }

                        Compare(mismatches, $"{path}.analysis.{item.Name}", item.Value, ours, "analysis", item.Name);
                    }

                    break;
                default:
                    Compare(mismatches, $"{path}.{property.Name}", property.Value, ours, property.Name);
                    break;
            }
        }
    }

    private static bool IsUnmappable(string name, JsonElement expectedOption) => name switch
    {
        "mptcp.ack" => expectedOption.GetProperty("fields").GetProperty("dataack8.flag").GetInt32() == 0,
        "mptcp.dss.dsn" => expectedOption.GetProperty("fields").GetProperty("dseqn8.flag").GetInt32() == 0,
        _ => UnmappableAnalysis.ContainsKey(name),
    };

    private static void Compare(List<string> mismatches, string path, JsonElement expected, JsonElement ours, params string[] keys)
    {
        var node = ours;
        foreach (var key in keys.Length == 0 ? [path] : keys)
        {
            if (node.ValueKind != JsonValueKind.Object || !node.TryGetProperty(key, out node))
            {
                mismatches.Add($"{path}: missing, tshark {expected.GetRawText()}");
                return;
            }
        }

        if (!Decoded.SameJson(expected, node))
        {
            mismatches.Add($"{path}: ours {node.GetRawText()}, tshark {expected.GetRawText()}");
        }
    }
}
