using System.Net;
using System.Text.Json;
using ProxySelection.Wire;

namespace ProxySelection.Wire.Json;

/// <summary>
/// One MPTCP option as JSON, fields named and valued as tshark 4.0 shows them (tests/vectors/README.md,
/// "Field mapping" and "Quirks"): flag bits as 0/1 except the MP_TCPRST booleans, 64-bit values as integers, the
/// MP_JOIN ACK HMAC as hex, addresses as text.
/// </summary>
public static class MptcpJson
{
    public static WireError TryWrite(Utf8JsonWriter w, ReadOnlySpan<byte> bytes)
    {
        var error = MptcpOption.TryParse(bytes, out var option);
        if (error == WireError.UnknownMptcpSubtype)
        {
            // RFC 8684 section 3: a subtype the receiver does not know is ignored, not an error.
            int code = bytes[2] >> 4;
            Start(w, bytes, "UNKNOWN", code);
            w.WriteEndObject();
            End(w, bytes);
            return WireError.None;
        }

        if (error != WireError.None)
        {
            return error;
        }

        switch (option.Subtype)
        {
            case MptcpSubtype.MpCapable:
                WriteMpCapable(w, bytes, option.MpCapable);
                break;
            case MptcpSubtype.MpJoin:
                WriteMpJoin(w, bytes, option.MpJoin);
                break;
            case MptcpSubtype.Dss:
                WriteDss(w, bytes, option.Dss);
                break;
            case MptcpSubtype.AddAddr:
                WriteAddAddr(w, bytes, option.AddAddr);
                break;
            case MptcpSubtype.RemoveAddr:
                WriteRemoveAddr(w, bytes, option.RemoveAddr);
                break;
            case MptcpSubtype.MpPrio:
                WriteMpPrio(w, bytes, option.MpPrio);
                break;
            case MptcpSubtype.MpFail:
                Start(w, bytes, "MP_FAIL", MptcpSubtype.MpFail);
                w.WriteNumber("reserved", option.MpFail.Reserved);
                w.WriteNumber("rawdataseqno", option.MpFail.DataSequenceNumber);
                w.WriteEndObject();
                End(w, bytes);
                break;
            case MptcpSubtype.MpFastClose:
                Start(w, bytes, "MP_FASTCLOSE", MptcpSubtype.MpFastClose);
                w.WriteNumber("reserved", option.MpFastClose.Reserved);
                w.WriteNumber("recvkey", option.MpFastClose.ReceiverKey);
                w.WriteEndObject();
                End(w, bytes);
                break;
            case MptcpSubtype.MpTcpRst:
                WriteMpTcpRst(w, bytes, option.MpTcpRst);
                break;
            default:
                // MP_EXPERIMENTAL (0xF): tshark shows the subtype only; the extension layer reads the raw bytes.
                Start(w, bytes, "MP_EXPERIMENTAL", MptcpSubtype.MpExperimental);
                w.WriteEndObject();
                End(w, bytes);
                break;
        }

        return WireError.None;
    }

    private static void WriteMpCapable(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in MpCapable mpc)
    {
        Start(w, bytes, "MP_CAPABLE", MptcpSubtype.MpCapable);
        int flags = (int)mpc.Flags;
        w.WriteNumber("version", mpc.Version);
        w.WriteNumber("flags", flags);
        w.WriteNumber("checksumreq.flags", (flags >> 7) & 1);
        w.WriteNumber("extensibility.flag", (flags >> 6) & 1);
        if (mpc.Version == 0)
        {
            // RFC 6824: C does not exist in v0, H selects HMAC-SHA1.
            w.WriteNumber("sha1.flag", flags & 1);
            w.WriteNumber("reserved.flag", (flags >> 1) & 0x1F);
        }
        else
        {
            w.WriteNumber("nomoresubflows.flag", (flags >> 5) & 1);
            w.WriteNumber("sha256.flag", flags & 1);
            w.WriteNumber("reserved.flag", (flags >> 1) & 0xF);
        }

        if (mpc.HasSenderKey)
        {
            w.WriteNumber("sendkey", mpc.SenderKey);
        }

        if (mpc.HasReceiverKey)
        {
            w.WriteNumber("recvkey", mpc.ReceiverKey);
        }

        if (mpc.HasDataLevelLength)
        {
            w.WriteNumber("datalvllen", mpc.DataLevelLength);
        }

        if (mpc.HasChecksum)
        {
            w.WriteNumber("checksum", mpc.Checksum);
        }

        w.WriteEndObject();
        if (mpc.HasSenderKey)
        {
            var (token, idsn) = KeyDerivation.TokenAndIdsn(mpc.SenderKey, mpc.Version);
            w.WriteStartObject("analysis");
            w.WriteNumber("mptcp.expected_token", token);
            w.WriteNumber("mptcp.expected_idsn", idsn);
            w.WriteEndObject();
        }

        End(w, bytes);
    }

    private static void WriteMpJoin(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in MpJoin join)
    {
        Start(w, bytes, "MP_JOIN", MptcpSubtype.MpJoin);
        if (join.Form == MpJoinForm.Ack)
        {
            w.WriteNumber("reserved", join.Reserved);
            w.WriteString("sendhmac", Convert.ToHexStringLower(join.Hmac));
        }
        else
        {
            // tshark's MP_JOIN "flags" is the whole byte that also holds the subtype nibble.
            w.WriteNumber("flags", ((int)MptcpSubtype.MpJoin << 4) | (join.Reserved << 1) | (join.Backup ? 1 : 0));
            w.WriteNumber("backup.flag", join.Backup ? 1 : 0);
            w.WriteNumber("addrid", join.AddressId);
            if (join.Form == MpJoinForm.Syn)
            {
                w.WriteNumber("recvtok", join.ReceiverToken);
            }
            else
            {
                w.WriteNumber("sendtrunchmac", join.TruncatedHmac);
            }

            w.WriteNumber("sendrand", join.SenderNonce);
        }

        w.WriteEndObject();
        End(w, bytes);
    }

    private static void WriteDss(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in Dss dss)
    {
        Start(w, bytes, "DSS", MptcpSubtype.Dss);
        w.WriteNumber("flags", (int)dss.Flags);
        w.WriteNumber("datafin.flag", dss.DataFin ? 1 : 0);
        w.WriteNumber("dseqn8.flag", dss.DsnIs8Bytes ? 1 : 0);
        w.WriteNumber("dseqnpresent.flag", dss.HasMapping ? 1 : 0);
        w.WriteNumber("dataack8.flag", dss.DataAckIs8Bytes ? 1 : 0);
        w.WriteNumber("dataackpresent.flag", dss.HasDataAck ? 1 : 0);
        if (dss.HasDataAck)
        {
            w.WriteNumber("rawdataack", dss.DataAck);
        }

        if (dss.HasMapping)
        {
            w.WriteNumber("rawdataseqno", dss.DataSequenceNumber);
            w.WriteNumber("subflowseqno", dss.SubflowSequenceNumber);
            w.WriteNumber("datalvllen", dss.DataLevelLength);
        }

        if (dss.HasChecksum)
        {
            // tshark 4.0.17 does not show it (README quirks); the name is the field tshark would use.
            w.WriteNumber("checksum", dss.Checksum);
        }

        w.WriteEndObject();
        bool ack64 = dss.HasDataAck && dss.DataAckIs8Bytes;
        bool dsn64 = dss.HasMapping && dss.DsnIs8Bytes;
        if (ack64 || dsn64 || dss.IsInfiniteMapping)
        {
            // 4-byte values are expanded by tshark from connection state, which one packet does not have.
            w.WriteStartObject("analysis");
            if (ack64)
            {
                w.WriteNumber("mptcp.ack", dss.DataAck);
            }

            if (dsn64)
            {
                w.WriteNumber("mptcp.dss.dsn", dss.DataSequenceNumber);
            }

            if (dss.IsInfiniteMapping)
            {
                // tshark marks it with an empty item: present means infinite (data-level length 0).
                w.WriteString("mptcp.dss.infinite_mapping", "");
            }

            w.WriteEndObject();
        }

        End(w, bytes);
    }

    private static void WriteAddAddr(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in AddAddr add)
    {
        Start(w, bytes, "ADD_ADDR", MptcpSubtype.AddAddr);
        w.WriteNumber("echo", add.Echo ? 1 : 0);
        w.WriteNumber("addrid", add.AddressId);
        w.WriteString(add.IsIPv6 ? "ipv6" : "ipv4", new IPAddress(add.Address).ToString());
        if (add.HasPort)
        {
            w.WriteNumber("port", add.Port);
        }

        if (add.HasHmac)
        {
            w.WriteNumber("addaddrtrunchmac", add.TruncatedHmac);
        }

        w.WriteEndObject();
        End(w, bytes);
    }

    private static void WriteRemoveAddr(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in RemoveAddr remove)
    {
        Start(w, bytes, "REMOVE_ADDR", MptcpSubtype.RemoveAddr);
        var ids = remove.AddressIds;
        if (ids.Length == 1)
        {
            w.WriteNumber("addrid", ids[0]);
        }
        else
        {
            // tshark repeats addrid once per id: a list here (README quirks).
            w.WriteStartArray("addrid");
            foreach (var id in ids)
            {
                w.WriteNumberValue(id);
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
        w.WriteStartObject("analysis");
        w.WriteNumber("mptcp.rm_addr.count", ids.Length);
        w.WriteEndObject();
        End(w, bytes);
    }

    private static void WriteMpPrio(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in MpPrio prio)
    {
        Start(w, bytes, "MP_PRIO", MptcpSubtype.MpPrio);
        w.WriteNumber("flags", ((int)MptcpSubtype.MpPrio << 4) | (prio.Reserved << 1) | (prio.Backup ? 1 : 0));
        w.WriteNumber("backup.flag", prio.Backup ? 1 : 0);
        if (prio.HasAddressId)
        {
            w.WriteNumber("addrid", prio.AddressId);
        }

        w.WriteEndObject();
        End(w, bytes);
    }

    private static void WriteMpTcpRst(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, in MpTcpRst rst)
    {
        Start(w, bytes, "MP_TCPRST", MptcpSubtype.MpTcpRst);
        int flags = (int)rst.Flags;
        w.WriteNumber("flags", ((int)MptcpSubtype.MpTcpRst << 4) | flags);
        // RFC 8684 section 3.6: U V W T in the low nibble, high bit first.
        w.WriteBoolean("flag_U.flag", (flags & 0x8) != 0);
        w.WriteBoolean("flag_V.flag", (flags & 0x4) != 0);
        w.WriteBoolean("flag_W.flag", (flags & 0x2) != 0);
        w.WriteBoolean("flag_T.flag", (flags & 0x1) != 0);
        w.WriteNumber("rst_reason", (int)rst.Reason);
        w.WriteEndObject();
        End(w, bytes);
    }

    /// <summary>Opens the option object and its <c>fields</c> object (left open for the subtype's fields).</summary>
    private static void Start(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, string name, MptcpSubtype subtype) =>
        Start(w, bytes, name, (int)subtype);

    private static void Start(Utf8JsonWriter w, ReadOnlySpan<byte> bytes, string name, int code)
    {
        w.WriteStartObject();
        w.WriteNumber("kind", bytes[0]);
        w.WriteNumber("length", bytes[1]);
        w.WriteString("subtype", name);
        w.WriteNumber("subtype_code", code);
        w.WriteStartObject("fields");
        w.WriteNumber("subtype", code);
    }

    /// <summary>Closes the option object after <c>fields</c> (and <c>analysis</c>) were closed.</summary>
    private static void End(Utf8JsonWriter w, ReadOnlySpan<byte> bytes)
    {
        w.WriteString("raw", Convert.ToHexStringLower(bytes));
        w.WriteEndObject();
    }
}
