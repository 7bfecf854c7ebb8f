using System.Buffers.Binary;
using System.Security.Cryptography;

namespace ProxySelection.Wire.Json;

/// <summary>Token and initial data sequence number from a key (RFC 8684 section 3.1; RFC 6824 for v0's SHA-1).</summary>
public static class KeyDerivation
{
    public static (uint Token, ulong Idsn) TokenAndIdsn(ulong key, int version)
    {
        Span<byte> keyBytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(keyBytes, key);
        Span<byte> hash = stackalloc byte[32];
        int length;
        if (version == 0)
        {
#pragma warning disable CA5350 // RFC 6824 fixes SHA-1 for v0 tokens; this only mirrors what tshark derives.
            length = SHA1.HashData(keyBytes, hash);
#pragma warning restore CA5350
        }
        else
        {
            length = SHA256.HashData(keyBytes, hash);
        }

        // Token: most significant 32 bits of the hash; IDSN: least significant 64 bits.
        return (BinaryPrimitives.ReadUInt32BigEndian(hash), BinaryPrimitives.ReadUInt64BigEndian(hash[(length - 8)..length]));
    }
}
